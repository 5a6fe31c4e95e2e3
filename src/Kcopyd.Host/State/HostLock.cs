using Tmds.Linux;

namespace Kcopyd.Host.State;

/// <summary>An OFD write lock on host.lock: one Kcopyd host per state directory, a second open in this process included.</summary>
internal sealed unsafe class HostLock : IDisposable
{
    private const ushort Mode = 0x180; // 0600
    private static readonly int[] RetryDelaysMs = [10, 20, 40, 80, 160];

    private int _fd;

    private HostLock(int fd) => _fd = fd;

    public static HostLock Take(string directory)
    {
        string path = Path.Combine(directory, StateDirectory.LockName);
        int fd = Posix.Open(path, LibC.O_RDWR | LibC.O_CREAT | LibC.O_NOFOLLOW | LibC.O_CLOEXEC, Mode);
        if (fd < 0) throw new HostStartException($"Cannot open the lock file '{path}': {Posix.Describe(LibC.errno)}");
        LibC.fchmod(fd, Mode); // 0600 whatever the umask; the private directory, not this mode, is what keeps others out
        // A child another thread forked but has not yet exec'ed holds a copy of a descriptor just closed (close-on-exec
        // is not close-on-fork), so a busy answer is asked again for about 300 ms before it counts.
        int errno = TrySet(fd);
        for (int i = 0; i < RetryDelaysMs.Length && IsBusy(errno); i++)
        {
            Thread.Sleep(RetryDelaysMs[i]);
            errno = TrySet(fd);
        }
        if (errno == 0) return new HostLock(fd);
        LibC.close(fd);
        throw new HostStartException(IsBusy(errno)
            ? $"Another Kcopyd host uses this state directory '{directory}' (it holds '{path}'); "
                + $"stop it, or set {StateDirectory.Variable} to another directory."
            : $"Cannot lock '{path}': {Posix.Describe(errno)}", lockHeld: IsBusy(errno));
    }

    /// <summary>Closing the only descriptor of the open file description releases the lock.</summary>
    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) LibC.close(fd);
    }

    private static bool IsBusy(int errno) => errno == LibC.EAGAIN || errno == LibC.EACCES;

    private static int TrySet(int fd)
    {
        flock whole = default;
        whole.l_type = (short)LibC.F_WRLCK;
        whole.l_whence = 0; // SEEK_SET; with l_start = l_len = 0 the whole file, however long
        int rc;
        do { rc = LibC.fcntl(fd, LibC.F_OFD_SETLK, &whole); } while (rc != 0 && LibC.errno == LibC.EINTR);
        return rc == 0 ? 0 : LibC.errno;
    }
}
