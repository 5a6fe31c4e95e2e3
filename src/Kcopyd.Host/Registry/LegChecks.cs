using Kcopyd.Engine;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Host.Registry;

/// <summary>
/// The checks before a device becomes a leg that the recovery overwrites, as mdadm's "appears to contain a
/// filesystem" and Clear-Disk -RemoveData: a filesystem, a partition table, a Kcopyd log or a live mirror on it
/// is refused (LegHoldsData) unless the admin forces it.
/// </summary>
internal static class LegChecks
{
    public static void RefuseIfHoldsData(IBlockDevice device, string what)
    {
        string? holds = device is MirrorDevice ? "a live mirror" : DataSignature.Probe(device);
        if (holds == null) return;
        throw new KcopydException("LegHoldsData", KcopydErrorKind.InvalidArgument,
            $"'{device.Name}', {what}, holds {holds}: the recovery would overwrite it with the first leg's bytes. " +
            "Check that is what you want, then pass -Force (or make it the first leg, whose data is kept).", device.Name);
    }
}
