using Tmds.Linux;

namespace Kcopyd.Engine.Native;

/// <summary>fcntl(F_OFD_SETLK): a lock owned by the open file, so a second open in this process conflicts too.</summary>
internal static unsafe class OfdLock
{
    /// <summary>Sets or clears <paramref name="request"/> without waiting; 0, or the errno.</summary>
    public static int Set(int fd, flock request)
    {
        int rc;
        do { rc = LibC.fcntl(fd, LibC.F_OFD_SETLK, &request); } while (rc != 0 && Errno.Last == LibC.EINTR);
        return rc == 0 ? 0 : Errno.Last;
    }
}
