using Kcopyd.Engine.Native;
using Tmds.Linux;

namespace Kcopyd.Host.State;

/// <summary>An OFD write lock on host.lock: one Kcopyd host per state directory, a second open in this process included.</summary>
internal sealed unsafe class HostLock : IDisposable
{
    private const ushort Mode = 0x180; // 0600

    private int _fd;

    private HostLock(int fd) => _fd = fd;

    public static HostLock Take(string directory)
    {
        string path = Path.Combine(directory, StateDirectory.LockName);
        int fd = Posix.Open(path, LibC.O_RDWR | LibC.O_CREAT | LibC.O_NOFOLLOW | LibC.O_CLOEXEC, Mode);
        if (fd < 0) throw new HostStartException($"Cannot open the lock file '{path}': {Posix.Describe(LibC.errno)}");
        LibC.fchmod(fd, Mode); // 0600 whatever the umask; the private directory, not this mode, is what keeps others out
        flock whole = default;
        whole.l_type = (short)LibC.F_WRLCK;
        whole.l_whence = 0; // SEEK_SET; with l_start = l_len = 0 the whole file, however long
        // A child forked but not yet exec'ed may hold a descriptor of the host before us for a moment: BusyRetry.
        int errno = BusyRetry.Run(() => OfdLock.Set(fd, whole), LibC.EAGAIN, LibC.EACCES);
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
}
