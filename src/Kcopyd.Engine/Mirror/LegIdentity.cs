using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Mirror;

/// <summary>What a log records to know a leg again after its path changed (renamed files, /dev/sdX swapped at boot).</summary>
public static class LegIdentity
{
    /// <summary>The device's serial/WWN, its file's device and inode, or a mirror's name; at most 255 bytes, as the log stores it.</summary>
    public static string Of(IBlockDevice device)
    {
        string id = device.StableId;
        if (System.Text.Encoding.UTF8.GetByteCount(id) <= LogFormat.MaxIdBytes) return id;
        // A long serial is kept whole in meaning: a hash of it is just as stable.
        return "sha256:" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(id)));
    }
}
