using System.ComponentModel;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Tmds.Linux;

namespace Kcopyd.Host.State;

/// <summary>The few libc calls the state directory makes, taking .NET strings and retrying EINTR.</summary>
internal static unsafe class Posix
{
    private const long MaxFileBytes = 1 << 20; // far above any definition; a stray huge file must not fill the host's memory

    public static int Open(string path, int flags, ushort mode = 0)
    {
        fixed (byte* p = Terminated(path))
        {
            int fd;
            do { fd = LibC.open(p, flags, mode); } while (fd < 0 && LibC.errno == LibC.EINTR);
            return fd;
        }
    }

    /// <summary>0, or the errno; a symbolic link is described, not followed.</summary>
    public static int Lstat(string path, out stat st)
    {
        fixed (byte* p = Terminated(path))
        fixed (stat* s = &st)
            return LibC.lstat(p, s) == 0 ? 0 : LibC.errno;
    }

    public static uint Type(in stat st) => (uint)st.st_mode & (uint)LibC.S_IFMT;

    /// <summary>Root's or the effective user's: nobody else may have put it there.</summary>
    public static bool IsOurs(in stat st) => st.st_uid == 0 || st.st_uid == LibC.geteuid();

    public static string Describe(int errno) => new Win32Exception(errno).Message;

    public static IOException Failed(string what, int errno) => new($"{what}: {Describe(errno)}");

    /// <summary>Null and the file's bytes, or why the file is not to be trusted: only a regular file of root's or ours is read.</summary>
    public static string? ReadOwnFile(string path, out byte[]? bytes)
    {
        bytes = null;
        // O_NONBLOCK: a FIFO put there must not hang the host's start.
        int fd = Open(path, LibC.O_RDONLY | LibC.O_NOFOLLOW | LibC.O_NONBLOCK | LibC.O_CLOEXEC);
        if (fd < 0)
            return LibC.errno == LibC.ELOOP
                ? $"'{path}' is a symbolic link, which is not followed."
                : $"Cannot open '{path}': {Describe(LibC.errno)}";
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        stat st;
        if (LibC.fstat(fd, &st) != 0) return $"Cannot stat '{path}': {Describe(LibC.errno)}";
        if (Type(st) != (uint)LibC.S_IFREG) return $"'{path}' is not a regular file.";
        if (!IsOurs(st)) return $"'{path}' belongs to uid {st.st_uid}, not to root or uid {LibC.geteuid()}.";
        if (st.st_size > MaxFileBytes) return $"'{path}' is larger than {MaxFileBytes} bytes.";
        try
        {
            using var stream = new FileStream(handle, FileAccess.Read, bufferSize: 0);
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            bytes = copy.ToArray();
            return null;
        }
        catch (IOException e)
        {
            return $"Cannot read '{path}': {e.Message}";
        }
    }

    private static byte[] Terminated(string path) => Encoding.UTF8.GetBytes(path + "\0");
}
