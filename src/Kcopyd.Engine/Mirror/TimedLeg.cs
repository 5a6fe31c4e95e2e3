using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// A leg as the mirror's recovery copies see it: the leg's device, with every request timed by the leg timeout
/// like the mirror's own (see <see cref="LegIo"/>), so a leg that hangs under a recovery copy is failed as Hung and the
/// copy's region is let go, instead of holding the writes to that region for as long as the leg hangs.
/// </summary>
internal sealed class TimedLeg(MirrorDevice mirror, MirrorLeg leg) : IBlockDevice, IWarningSource
{
    public string Name => leg.Device.Name;

    public long SizeBytes => leg.Device.SizeBytes;

    public int LogicalBlockSize => leg.Device.LogicalBlockSize;

    public bool CanWrite => leg.Device.CanWrite;

    public DeviceIdentity Identity => leg.Device.Identity;

    public StorageExtent Storage => leg.Device.Storage;

    public string StableId => leg.Device.StableId;

    public long WarningCount => leg.Device is IWarningSource w ? w.WarningCount : 0;

    public string[] WarningsSince(long count) => leg.Device is IWarningSource w ? w.WarningsSince(count) : [];

    public (bool IsHole, long LengthBytes) ExtentAt(long offsetBytes, long maxBytes) => leg.Device.ExtentAt(offsetBytes, maxBytes);

    public void Submit(in BlockRequest request, IIoQueue queue)
        => mirror.SubmitToLeg(leg, request.Completion, request.Operation, request.OffsetBytes, request.LengthBytes, request.Buffers, request.Tag);

    /// <summary>The mirror owns the leg's device: nothing to let go here.</summary>
    public void Dispose()
    {
    }
}
