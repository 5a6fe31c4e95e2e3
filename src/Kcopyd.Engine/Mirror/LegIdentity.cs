using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Mirror;

/// <summary>What a log records to know a leg again after its path changed (renamed files, /dev/sdX swapped at boot).</summary>
public static class LegIdentity
{
    public static string Of(IBlockDevice device) => device switch
    {
        MirrorDevice mirror => $"mirror:{mirror.Name}",
        _ => $"{device.Identity.Kind}:{device.Identity.Device}:{device.Identity.Inode}",
    };
}
