namespace Kcopyd.Engine.Devices;

/// <summary>How a device is opened.</summary>
public sealed record DeviceOpenOptions
{
    public bool Write { get; init; }

    /// <summary>
    /// Open a block device with O_EXCL, so a mounted or otherwise claimed device is refused (DeviceInUse); lock an
    /// image file opened for writing against other writers, in this process or another (DeviceInUse too).
    /// Off only when the admin forces it.
    /// </summary>
    public bool Exclusive { get; init; } = true;

    /// <summary>Use O_DIRECT where the filesystem or device supports it (it falls back to buffered I/O otherwise).</summary>
    public bool Direct { get; init; } = true;

    public static DeviceOpenOptions ReadOnly { get; } = new() { Write = false, Exclusive = false };

    public static DeviceOpenOptions ReadWrite { get; } = new() { Write = true };
}
