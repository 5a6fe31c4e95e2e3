using System.Text;
using Tmds.Linux;

namespace Kcopyd.Host;

/// <summary>
/// Once the host listens, its stdout and stderr become its log file and stdin /dev/null: the pipes of the cmdlet
/// that started it are let go, so that cmdlet's pwsh (and whatever reads its output) is not held by the host.
/// </summary>
internal static class HostLogFile
{
    /// <summary>A log past this size is started afresh when a host takes it over.</summary>
    private const long MaxBytes = 16L << 20;

    /// <summary>
    /// A writer on the log file, or null if it cannot be opened (the host runs on, its output where it went).
    /// .NET's Console writers hold duplicates of the old descriptors, so the host's log must use this one.
    /// </summary>
    public static unsafe TextWriter? TakeOver(string path)
    {
        int fd;
        fixed (byte* p = Encoding.UTF8.GetBytes(path + "\0"))
        {
            // In the 0700 runtime directory, never through a link, and 0600 like everything the host creates.
            fd = LibC.open(p, LibC.O_WRONLY | LibC.O_CREAT | LibC.O_APPEND | LibC.O_NOFOLLOW | LibC.O_CLOEXEC, 0x180);
        }
        if (fd < 0) return null;
        stat st;
        if (LibC.fstat(fd, &st) == 0 && st.st_size > MaxBytes) LibC.ftruncate(fd, 0);
        // Whatever the runtime itself writes to stdout or stderr (a crash report) lands in the log too.
        LibC.dup2(fd, 1);
        LibC.dup2(fd, 2);
        fixed (byte* p = "/dev/null\0"u8)
        {
            int nul = LibC.open(p, LibC.O_RDONLY | LibC.O_CLOEXEC);
            if (nul >= 0)
            {
                LibC.dup2(nul, 0);
                LibC.close(nul);
            }
        }
        var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        return new StreamWriter(new FileStream(handle, FileAccess.Write, bufferSize: 0)) { AutoFlush = true };
    }
}
