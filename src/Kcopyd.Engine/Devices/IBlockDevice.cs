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
    /// Starts a request. I/O the device does itself goes through <paramref name="queue"/>, the caller's own queue.
    /// May block the calling thread while the device has no room for another request (a mirror's request pool):
    /// a caller that must not block on this device must not be a thread the device's progress depends on.
    /// </summary>
    void Submit(in BlockRequest request, IIoQueue queue);
}
