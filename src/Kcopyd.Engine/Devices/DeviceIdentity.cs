namespace Kcopyd.Engine.Devices;

/// <summary>What kind of thing backs a device.</summary>
public enum DeviceKind
{
    BlockDevice,
    ImageFile,
    Mirror,
    Network, // an NBD export: Device and Inode hash its normalised URI
}

/// <summary>
/// Identifies the storage behind a device: the device number for a block device, device and inode for a file.
/// Two handles with equal identities read and write the same bytes.
/// </summary>
public readonly record struct DeviceIdentity(DeviceKind Kind, ulong Device, ulong Inode);
