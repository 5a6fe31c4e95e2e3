using System.Text;
using System.Text.RegularExpressions;
using Kcopyd.Engine.Native;
using Tmds.Linux;

namespace Kcopyd.Engine.Devices;

/// <summary>
/// Follows a device down through partitions and loop devices to the disk or file that holds its bytes
/// (<see cref="StorageExtent"/>), and names that storage so the name survives renames and renumbering.
/// </summary>
/// <remarks>
/// Only partitions and loop devices are followed; device-mapper, MD and other stacked devices are storage of their
/// own here. When sysfs is missing or says nothing, a device is simply its own storage: the answer errs towards
/// "different storage", which is what the checks did before this existed.
/// </remarks>
internal static unsafe partial class StorageResolver
{
    private const int SectorBytes = 512; // sysfs counts partition starts in 512-byte sectors, whatever the block size
    private const int MaxDepth = 8;      // a loop on a loop on ...: more than this is a loop of sysfs links, not storage

    public readonly record struct Resolved(StorageExtent Storage, string StableId);

    /// <summary>A regular file is its own storage.</summary>
    public static Resolved OfFile(in stat st)
    {
        var identity = new DeviceIdentity(DeviceKind.ImageFile, (ulong)st.st_dev, (ulong)st.st_ino);
        return new Resolved(new StorageExtent(identity, 0), $"file:{identity.Device}:{identity.Inode}");
    }

    /// <summary>
    /// Resolves the block device <paramref name="rdev"/>, open as <paramref name="fd"/>. The loop status ioctl goes
    /// through that fd, also for a partition of a loop device (the loop driver answers for the partition's disk);
    /// a loop further down, which we hold no fd for, is read from sysfs instead.
    /// </summary>
    public static Resolved OfBlockDevice(int fd, ulong rdev)
    {
        ulong dev = rdev;
        long offset = 0;
        bool viaLoop = false;
        int loopFd = fd;
        for (int depth = 0; depth < MaxDepth; depth++)
        {
            if (TryReadPartition(dev, out ulong disk, out long startBytes))
            {
                dev = disk;
                offset += startBytes;
                continue;
            }
            string folder = DeviceNumber.SysfsFolder(dev);
            if (!Directory.Exists(Path.Combine(folder, "loop")) || !TryReadLoop(loopFd, folder, out var backing)) break;
            viaLoop = true;
            offset += backing.OffsetBytes;
            loopFd = -1;
            if (!backing.IsBlockDevice)
            {
                var file = new DeviceIdentity(DeviceKind.ImageFile, backing.Device, backing.Inode);
                return new Resolved(new StorageExtent(file, offset), $"loop:{file.Device}:{file.Inode}@{offset}");
            }
            dev = backing.Device;
        }
        string id = (viaLoop ? "loop:" : "") + DiskName(dev) + (viaLoop || offset != 0 ? $"@{offset}" : "");
        return new Resolved(new StorageExtent(new DeviceIdentity(DeviceKind.BlockDevice, dev, 0), offset), id);
    }

    /// <summary>What a loop device reads and writes: a file (st_dev, st_ino) or a block device (st_rdev), from an offset.</summary>
    private readonly record struct LoopBacking(bool IsBlockDevice, ulong Device, ulong Inode, long OffsetBytes);

    /// <summary>
    /// The storage the block device number <paramref name="dev"/> (a filesystem's st_dev, say) covers, followed
    /// through partitions and loop devices like a leg's, and how many bytes of it; read from sysfs, with no fd.
    /// </summary>
    public static (StorageExtent Storage, long LengthBytes) ExtentOf(ulong dev)
    {
        var storage = OfBlockDevice(-1, dev).Storage;
        long length = long.TryParse(ReadSysfs(Path.Combine(DeviceNumber.SysfsFolder(dev), "size")), out long sectors) && sectors > 0
            ? sectors * SectorBytes
            : long.MaxValue - storage.OffsetBytes; // unknown: as far as the storage goes
        return (storage, length);
    }

    private static bool TryReadPartition(ulong partition, out ulong disk, out long startBytes)
    {
        string folder = DeviceNumber.SysfsFolder(partition);
        disk = 0;
        startBytes = 0;
        if (!File.Exists(Path.Combine(folder, "partition"))) return false;
        string? diskFolder = Path.GetDirectoryName(DeviceNumber.RealSysfsFolder(partition));
        if (diskFolder == null
            || !long.TryParse(ReadSysfs(Path.Combine(folder, "start")), out long startSectors)
            || !DeviceNumber.TryParse(ReadSysfs(Path.Combine(diskFolder, "dev")), out disk))
            return false;
        startBytes = startSectors * SectorBytes;
        return true;
    }

    private static bool TryReadLoop(int fd, string folder, out LoopBacking backing)
    {
        backing = default;
        if (fd >= 0)
        {
            LoopInfo64 info;
            // ENXIO: no file attached. A loop device with nothing behind it is its own (empty) storage.
            if (LibC.ioctl(fd, LoopIoctl.LOOP_GET_STATUS64, &info) != 0) return false;
            backing = info.RDevice != 0
                ? new LoopBacking(true, info.RDevice, 0, (long)info.Offset)
                : new LoopBacking(false, info.Device, info.Inode, (long)info.Offset);
            return true;
        }
        string? file = ReadSysfs(Path.Combine(folder, "loop", "backing_file"));
        if (string.IsNullOrEmpty(file) || file.EndsWith(" (deleted)", StringComparison.Ordinal)
            || !long.TryParse(ReadSysfs(Path.Combine(folder, "loop", "offset")), out long offset))
            return false;
        stat st;
        byte[] path = Encoding.UTF8.GetBytes(file + "\0");
        fixed (byte* p = path)
        {
            if (LibC.stat(p, &st) != 0) return false;
        }
        backing = ((uint)st.st_mode & (uint)LibC.S_IFMT) == (uint)LibC.S_IFBLK
            ? new LoopBacking(true, (ulong)st.st_rdev, 0, offset)
            : new LoopBacking(false, (ulong)st.st_dev, (ulong)st.st_ino, offset);
        return true;
    }

    /// <summary>
    /// The disk's world-wide name or serial number where sysfs has one (SCSI/SATA under device/, NVMe and virtio on
    /// the disk itself), else its device number, which the next boot may give to another disk.
    /// </summary>
    internal static string DiskName(ulong dev)
    {
        string folder = DeviceNumber.SysfsFolder(dev);
        foreach (var (file, kind) in new[] { ("wwid", "wwid"), ("device/wwid", "wwid"), ("serial", "serial"), ("device/serial", "serial") })
        {
            string? value = ReadSysfs(Path.Combine(folder, file));
            // Vendors pad these with spaces ("t10.ATA     QEMU HARDDISK"); one underscore per run keeps the name one word.
            if (!string.IsNullOrEmpty(value)) return $"{kind}:{Whitespace().Replace(value, "_")}";
        }
        return "dev:" + DeviceNumber.Format(dev);
    }

    private static string? ReadSysfs(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllText(path).Trim() : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();
}
