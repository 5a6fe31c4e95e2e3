using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Tmds.Linux;

namespace Kcopyd.Host.State;

/// <summary>Replaces a file so that a crash leaves the old content or the new one, never a mix.</summary>
internal static unsafe partial class AtomicFile
{
    private const ushort FileMode = 0x180; // 0600

    // The leading dot keeps a temp file out of *.json and can never start a valid mirror name.
    [GeneratedRegex(@"^\..+\.[0-9a-f]{16}\.tmp\z")]
    private static partial Regex TempName();

    /// <summary>Writes <paramref name="bytes"/> to a new temp file, fsyncs it, renames it over NAME, fsyncs the directory.</summary>
    public static void Write(string directory, string name, byte[] bytes)
    {
        string target = Path.Combine(directory, name);
        string temp = Path.Combine(directory, $".{name}.{RandomNumberGenerator.GetHexString(16, lowercase: true)}.tmp");
        int fd = Posix.Open(temp, LibC.O_WRONLY | LibC.O_CREAT | LibC.O_EXCL | LibC.O_NOFOLLOW | LibC.O_CLOEXEC, FileMode);
        if (fd < 0) throw Posix.Failed($"Cannot create '{temp}'", LibC.errno);
        bool renamed = false;
        try
        {
            try
            {
                // 0600 whatever the umask.
                if (LibC.fchmod(fd, FileMode) != 0) throw Posix.Failed($"Cannot chmod '{temp}'", LibC.errno);
                WriteAll(fd, bytes, temp);
                // Without this the rename can reach the disk before the data, and a crash leaves an empty file.
                if (LibC.fsync(fd) != 0) throw Posix.Failed($"Cannot fsync '{temp}'", LibC.errno);
            }
            finally
            {
                LibC.close(fd);
            }
            File.Move(temp, target, overwrite: true); // rename(2): the target is the old file or the new, at every instant
            renamed = true;
        }
        finally
        {
            if (!renamed) File.Delete(temp);
        }
        SyncDirectory(directory);
    }

    /// <summary>Makes a rename or unlink in <paramref name="directory"/> survive a crash.</summary>
    public static void SyncDirectory(string directory)
    {
        int fd = Posix.Open(directory, LibC.O_RDONLY | LibC.O_DIRECTORY | LibC.O_CLOEXEC);
        if (fd < 0) throw Posix.Failed($"Cannot open '{directory}'", LibC.errno);
        try
        {
            if (LibC.fsync(fd) != 0) throw Posix.Failed($"Cannot fsync '{directory}'", LibC.errno);
        }
        finally
        {
            LibC.close(fd);
        }
    }

    /// <summary>Removes the temp files of writes that crashed before their rename; the files they were to replace are intact.</summary>
    public static void RemoveLeftovers(string directory)
    {
        foreach (string path in Directory.EnumerateFiles(directory, ".*.tmp"))
            if (TempName().IsMatch(Path.GetFileName(path))) File.Delete(path);
    }

    private static void WriteAll(int fd, byte[] bytes, string path)
    {
        fixed (byte* start = bytes)
            for (int done = 0; done < bytes.Length;)
            {
                long n = LibC.write(fd, start + done, bytes.Length - done);
                if (n < 0 && LibC.errno == LibC.EINTR) continue;
                if (n < 0) throw Posix.Failed($"Cannot write '{path}'", LibC.errno);
                done += (int)n;
            }
    }
}
