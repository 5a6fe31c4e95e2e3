using System.Text;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;
using Tmds.Linux;

namespace Kcopyd.Engine.Devices;

/// <summary>A Linux block device or an image file, opened with O_DIRECT where supported.</summary>
public sealed unsafe class LinuxBlockDevice : IBlockDevice
{
    private const int FallbackDirectAlignment = 4096;
    private const int BufferedAlignment = 512;

    // Set in _state once disposed; the bits below it count requests submitted and not yet completed.
    private const int DisposedFlag = 1 << 30;

    private readonly int _fd;
    private int _state;
    private int _closed;

    private LinuxBlockDevice(string path, int fd, bool isBlockDevice, bool direct, bool canWrite, long sizeBytes, int logicalBlockSize,
        DeviceIdentity identity, StorageResolver.Resolved storage)
    {
        Name = path;
        _fd = fd;
        IsBlockDevice = isBlockDevice;
        IsDirect = direct;
        CanWrite = canWrite;
        SizeBytes = sizeBytes;
        LogicalBlockSize = logicalBlockSize;
        Identity = identity;
        Storage = storage.Storage;
        StableId = storage.StableId;
    }

    public string Name { get; }

    public long SizeBytes { get; }

    public int LogicalBlockSize { get; }

    public bool CanWrite { get; }

    public DeviceIdentity Identity { get; }

    /// <summary>Resolved at open: a partition's disk, a loop device's backing file (at their offsets), a file itself.</summary>
    public StorageExtent Storage { get; }

    /// <summary>
    /// <c>file:&lt;st_dev&gt;:&lt;st_ino&gt;</c> for an image file; <c>loop:&lt;st_dev&gt;:&lt;st_ino&gt;@&lt;offset&gt;</c> for a
    /// loop device (its backing file, not its number); <c>wwid:…</c> or <c>serial:…</c> for a disk sysfs names, with
    /// <c>@&lt;start in bytes&gt;</c> for a partition of it; otherwise <c>dev:&lt;major&gt;:&lt;minor&gt;</c>, which is
    /// NOT stable: the next boot or hot-plug may give that number to another disk.
    /// </summary>
    public string StableId { get; }

    public bool IsBlockDevice { get; }

    /// <summary>True when opened with O_DIRECT: buffers must be aligned to <see cref="LogicalBlockSize"/>.</summary>
    public bool IsDirect { get; }

    /// <summary>
    /// Opens a block device or image file, checking it exists, is not claimed by others, and its geometry. An image
    /// file opened for writing with <see cref="DeviceOpenOptions.Exclusive"/> is locked against other writers
    /// (an OFD lock, so also against a second open in this process) until the device is disposed.
    /// </summary>
    public static LinuxBlockDevice Open(string path, DeviceOpenOptions options)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] pathBytes = Encoding.UTF8.GetBytes(path + "\0");
        stat st;
        fixed (byte* p = pathBytes)
        {
            if (LibC.stat(p, &st) != 0)
                throw OpenError(path, Errno.Last);
        }
        uint type = (uint)st.st_mode & (uint)LibC.S_IFMT;
        bool isBlock = type == (uint)LibC.S_IFBLK;
        if (!isBlock && type != (uint)LibC.S_IFREG)
            throw new KcopydException("UnsupportedDevice", KcopydErrorKind.InvalidArgument,
                $"'{path}' is neither a block device nor a regular file.", path);

        int flags = (options.Write ? LibC.O_RDWR : LibC.O_RDONLY) | LibC.O_CLOEXEC;
        // O_EXCL on a block device fails with EBUSY while it is mounted or claimed by another exclusive opener.
        if (isBlock && options.Exclusive) flags |= LibC.O_EXCL;
        bool direct = options.Direct;
        int fd = -1;
        int openErrno = BusyRetry.Run(() =>
        {
            fd = OpenFd(pathBytes, flags | (direct ? LibC.O_DIRECT : 0));
            if (fd < 0 && direct && Errno.Last == Errno.EINVAL)
            {
                direct = false; // tmpfs and some FUSE filesystems refuse O_DIRECT
                fd = OpenFd(pathBytes, flags);
            }
            return fd < 0 ? Errno.Last : 0;
        }, Errno.EBUSY);
        if (fd < 0) throw openErrno == Errno.EBUSY && isBlock ? InUse(path, (ulong)st.st_rdev) : OpenError(path, openErrno);

        try
        {
            long size;
            int blockSize;
            DeviceIdentity identity;
            StorageResolver.Resolved storage;
            if (isBlock)
            {
                ulong bytes;
                if (LibC.ioctl(fd, BlockIoctl.BLKGETSIZE64, &bytes) != 0) throw IoctlError(path, "BLKGETSIZE64");
                int ssz;
                if (LibC.ioctl(fd, BlockIoctl.BLKSSZGET, &ssz) != 0) throw IoctlError(path, "BLKSSZGET");
                size = (long)bytes;
                blockSize = ssz;
                identity = new DeviceIdentity(DeviceKind.BlockDevice, (ulong)st.st_rdev, 0);
                storage = StorageResolver.OfBlockDevice(fd, (ulong)st.st_rdev);
            }
            else
            {
                size = st.st_size;
                blockSize = direct ? DirectAlignmentOfFile((ulong)st.st_dev) : BufferedAlignment;
                identity = new DeviceIdentity(DeviceKind.ImageFile, (ulong)st.st_dev, (ulong)st.st_ino);
                storage = StorageResolver.OfFile(st);
                if (options.Write && options.Exclusive) LockAgainstOtherWriters(fd, path);
            }
            return new LinuxBlockDevice(path, fd, isBlock, direct, options.Write, size, blockSize, identity, storage);
        }
        catch
        {
            LibC.close(fd);
            throw;
        }
    }

    /// <summary>
    /// Asks the filesystem where the next data (SEEK_DATA) or the next hole (SEEK_HOLE) starts. No data past the
    /// offset (ENXIO) is a hole to the end; filesystems without holes say data up to the end.
    /// </summary>
    public (bool IsHole, long LengthBytes) ExtentAt(long offsetBytes, long maxBytes)
    {
        if (IsBlockDevice || offsetBytes < 0 || offsetBytes >= SizeBytes || (Volatile.Read(ref _state) & DisposedFlag) != 0)
            return (false, maxBytes);
        long data = LibC.lseek(_fd, offsetBytes, SeekData);
        if (data < 0) data = Errno.Last == Errno.ENXIO ? SizeBytes : offsetBytes;
        if (data > offsetBytes) return (true, Math.Min(maxBytes, data - offsetBytes));
        long hole = LibC.lseek(_fd, offsetBytes, SeekHole);
        if (hole < offsetBytes) hole = SizeBytes;
        return (false, Math.Min(maxBytes, hole - offsetBytes));
    }

    private const int SeekData = 3; // lseek(2)
    private const int SeekHole = 4;

    public void Submit(in BlockRequest request, IIoQueue queue)
    {
        // The last line of defence: never touch a byte past the end, whatever the caller checked.
        if (request.OffsetBytes < 0 || request.LengthBytes < 0 || request.OffsetBytes + request.LengthBytes > SizeBytes
            || (!CanWrite && request.Operation != BlockOperation.Read))
        {
            ObjectDisposedException.ThrowIf((Volatile.Read(ref _state) & DisposedFlag) != 0, this);
            request.Completion.Completed(request.Tag, Errno.EINVAL);
            return;
        }
        // Counted before the disposed check, so Dispose either sees this request or we see Dispose: never neither.
        if ((Interlocked.Increment(ref _state) & DisposedFlag) != 0)
        {
            EndRequest();
            throw new ObjectDisposedException(Name);
        }
        var completion = InFlightCompletion.Rent(this, request.Completion);
        try
        {
            queue.Submit(_fd, IsBlockDevice, request with { Completion = completion });
        }
        catch
        {
            // The queue refused it (disposed): no completion will come for it.
            completion.Abandon();
            EndRequest();
            throw;
        }
    }

    /// <summary>
    /// Refuses new requests at once but closes the fd only when the last request in flight has completed: closed
    /// earlier, its number could go to another open file while the kernel or a queue still has the request.
    /// </summary>
    public void Dispose()
    {
        int before = Interlocked.Or(ref _state, DisposedFlag);
        if (before == 0) CloseOnce();
    }

    /// <summary>Called once per completed request (by <see cref="InFlightCompletion"/>).</summary>
    internal void EndRequest()
    {
        if (Interlocked.Decrement(ref _state) == DisposedFlag) CloseOnce();
    }

    // A Submit that raced Dispose counts itself in and out again after the fd may already be closed; the flag
    // keeps that from closing whatever file has the number now.
    private void CloseOnce()
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0) LibC.close(_fd);
    }

    public override string ToString() => Name;

    private static int OpenFd(byte[] pathBytes, int flags)
    {
        fixed (byte* p = pathBytes)
        {
            int fd;
            do { fd = LibC.open(p, flags, 0); } while (fd < 0 && Errno.Last == LibC.EINTR);
            return fd;
        }
    }

    /// <summary>
    /// O_DIRECT on a file must be aligned to the logical block size of the device under its filesystem, which
    /// sysfs gives by device number; filesystems with no device of their own (overlay) get a safe 4 KiB.
    /// </summary>
    private static int DirectAlignmentOfFile(ulong dev)
    {
        // A filesystem on a partition: the partition has no queue/ of its own, its disk (the folder around it) has.
        string folder = DeviceNumber.RealSysfsFolder(dev);
        foreach (var candidate in new[] { folder, Path.GetDirectoryName(folder) ?? folder })
        {
            string file = Path.Combine(candidate, "queue", "logical_block_size");
            if (File.Exists(file) && int.TryParse(File.ReadAllText(file).Trim(), out int size) && size > 0)
                return size;
        }
        return FallbackDirectAlignment;
    }

    /// <summary>Far past any end: the byte a mirror locks to claim a device as its leg.</summary>
    private const long LegClaimOffset = 1L << 62;

    /// <summary>
    /// Claims the device as a mirror leg for as long as it is open, also when it was opened with -Force: an OFD
    /// lock on one byte far past the end, which a second mirror (in this process or another) takes too and so
    /// cannot get, and which a writer's whole-file lock covers. Works on block device nodes as on files.
    /// </summary>
    public void ClaimAsLeg()
    {
        if (SetLegClaim(LibC.F_WRLCK)) return;
        throw new KcopydException("LegInUse", KcopydErrorKind.ResourceBusy,
            $"'{Name}' is a leg of a mirror that is live (in this or another process), or held by a writer.", Name);
    }

    public void ReleaseLegClaim() => SetLegClaim(LibC.F_UNLCK);

    private bool SetLegClaim(int type)
    {
        if (Volatile.Read(ref _closed) != 0) return true; // closing the fd dropped the claim; the number may be another file's now
        flock claim = default;
        claim.l_type = (short)type;
        claim.l_whence = (short)LibC.SEEK_SET;
        claim.l_start = LegClaimOffset;
        claim.l_len = 1;
        int fd = _fd;
        int errno = type == LibC.F_UNLCK
            ? OfdLock.Set(fd, claim)
            : BusyRetry.Run(() => OfdLock.Set(fd, claim), LibC.EAGAIN, LibC.EACCES);
        if (errno == 0) return true;
        // A filesystem without locks cannot be guarded: as for the writer's lock, it is still usable.
        return errno != LibC.EAGAIN && errno != LibC.EACCES;
    }

    /// <summary>
    /// Takes a non-blocking OFD write lock on the whole file. OFD locks belong to the open file, not the process, so
    /// a second writer in this process conflicts too, and closing some other fd of the file does not drop the lock.
    /// </summary>
    private static void LockAgainstOtherWriters(int fd, string path)
    {
        flock whole = default;
        whole.l_type = (short)LibC.F_WRLCK;
        whole.l_whence = (short)LibC.SEEK_SET; // l_start = l_len = 0: from byte 0 to any future end
        int errno = BusyRetry.Run(() => OfdLock.Set(fd, whole), LibC.EAGAIN, LibC.EACCES);
        if (errno == 0) return;
        if (errno == LibC.EAGAIN || errno == LibC.EACCES)
            throw new KcopydException("DeviceInUse", KcopydErrorKind.ResourceBusy,
                $"'{path}' is held by another writer (a mirror leg or a running copy, in this or another process). " +
                "Use -Force to open it anyway.", path);
        // ENOLCK (NFS without a lock manager), EINVAL (a filesystem without locks): the file is still usable,
        // it just cannot be guarded; refusing it would take away image files on those filesystems altogether.
    }

    private static KcopydException OpenError(string path, int errno) => errno switch
    {
        2 or 20 => new KcopydException("DeviceNotFound", KcopydErrorKind.NotFound, $"Cannot find '{path}'.", path),
        Errno.EBUSY => new KcopydException("DeviceInUse", KcopydErrorKind.ResourceBusy,
            $"'{path}' is in use (mounted, or held open exclusively by another program). Use -Force to open it anyway.", path),
        1 or 13 or 30 => new KcopydException("DeviceAccessDenied", KcopydErrorKind.PermissionDenied,
            $"Cannot open '{path}': {Errno.DescribeNamed(errno)}.", path),
        _ => new KcopydException("DeviceOpenFailed", KcopydErrorKind.DeviceError, $"Cannot open '{path}': {Errno.DescribeNamed(errno)}.", path),
    };

    /// <summary>An exclusive open found the device busy: names the holder where the system says who it is.</summary>
    private static KcopydException InUse(string path, ulong rdev)
        => new("DeviceInUse", KcopydErrorKind.ResourceBusy,
            $"'{path}' is in use: {DeviceHolders.Describe(rdev) ?? "held open exclusively by another program"}. Use -Force to open it anyway.", path);

    private static KcopydException IoctlError(string path, string request)
        => new("DeviceOpenFailed", KcopydErrorKind.DeviceError, $"{request} failed on '{path}': {Errno.Describe(Errno.Last)}.", path);
}
