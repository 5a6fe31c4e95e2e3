using Kcopyd.Engine.Nbd;

namespace Kcopyd.Engine.Devices;

/// <summary>Opens what a user names as a device: an NBD URI (another host's export) or a path (block device or image file).</summary>
public static class BlockDevices
{
    public static IBlockDevice Open(string pathOrUri, DeviceOpenOptions options)
        => NbdUri.IsNbdUri(pathOrUri) ? NbdDevice.Open(pathOrUri, options) : LinuxBlockDevice.Open(pathOrUri, options);
}
