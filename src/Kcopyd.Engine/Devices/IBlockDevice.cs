using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Devices;

/// <summary>
/// Something that stores blocks: a Linux block device, an image file, or a mirror built from other devices.
/// Takes many concurrent asynchronous requests; each completes exactly once through its completion.
/// </summary>
public interface IBlockDevice : IDisposable
{
    /// <summary>The path, or the mirror's name.</summary>
    string Name { get; }

    long SizeBytes { get; }

    /// <summary>Offsets and lengths of every request are multiples of this.</summary>
    int LogicalBlockSize { get; }

    bool CanWrite { get; }

    /// <summary>What the device stores its data on, to tell when two devices are one.</summary>
    DeviceIdentity Identity { get; }

    /// <summary>
    /// The storage under the device and where the device starts in it, so two names for the same bytes (a loop
    /// device and its image file, a partition and its disk) are told apart from two devices. A device that sits on
    /// nothing else is its own storage at offset 0.
    /// </summary>
    StorageExtent Storage => new(Identity, 0);

    /// <summary>
    /// A name for the device's storage that does not change when the path does (a renamed image file, /dev/sdb
    /// and /dev/sdc trading places, a loop device reattached under another number), for remembering a leg.
    /// By default derived from <see cref="Identity"/>: <c>file:&lt;st_dev&gt;:&lt;st_ino&gt;</c> for a file,
    /// <c>dev:&lt;major&gt;:&lt;minor&gt;</c> for a block device (which is not stable across reboots or hot-plug),
    /// <c>mirror:&lt;id&gt;</c> for a mirror (valid in this process only).
    /// </summary>
    string StableId => Identity.Kind switch
    {
        DeviceKind.ImageFile => $"file:{Identity.Device}:{Identity.Inode}",
        DeviceKind.BlockDevice => "dev:" + DeviceNumber.Format(Identity.Device),
        _ => $"mirror:{Identity.Device}",
    };

    /// <summary>
    /// What lies at <paramref name="offsetBytes"/>: a hole that is known to read back as zeros without reading it (a
    /// sparse image file's, from SEEK_DATA/SEEK_HOLE), or data; and how many bytes of it, at most
    /// <paramref name="maxBytes"/>. By default all data, which is always safe.
    /// </summary>
    (bool IsHole, long LengthBytes) ExtentAt(long offsetBytes, long maxBytes) => (false, maxBytes);

    /// <summary>
    /// Starts a request. I/O the device does itself goes through <paramref name="queue"/>, the caller's own queue.
    /// May block the calling thread while the device has no room for another request (a mirror's request pool):
    /// a caller that must not block on this device must not be a thread the device's progress depends on.
    /// </summary>
    void Submit(in BlockRequest request, IIoQueue queue);
}
