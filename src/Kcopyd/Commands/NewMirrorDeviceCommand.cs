using System.Management.Automation;
using Kcopyd.Engine;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>
/// Creates a mirror device (dm-raid1) over 2 or more legs: block devices, image files or other mirrors. Unless
/// -NoSync, recovery starts at once and copies every out-of-sync region from the first leg to the others.
/// </summary>
[Cmdlet(VerbsCommon.New, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(MirrorStatus))]
public sealed class NewMirrorDeviceCommand : PSCmdlet
{
    [Parameter(Mandatory = true, Position = 0)]
    [ValidatePattern("^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    public string Name { get; set; } = null!;

    /// <summary>The legs; the first is the default leg that recovery copies from.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    [ValidateCount(2, MirrorDevice.MaxLegs)]
    [DeviceArgumentTransformation]
    public DeviceArgument[] Leg { get; set; } = null!;

    /// <summary>Bytes per region: a power of two and a multiple of the legs' logical block size.</summary>
    [Parameter]
    [ValidateRange(512, 1L << 30)]
    public long RegionSize { get; set; } = MirrorOptions.DefaultRegionSizeBytes;

    /// <summary>A file for a persistent dirty-region log; an existing log of this mirror resyncs only what it marks.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? LogPath { get; set; }

    /// <summary>Take the legs as identical: no initial recovery. A sampled comparison warns when they are not.</summary>
    [Parameter]
    public SwitchParameter NoSync { get; set; }

    /// <summary>Start the log afresh, every region out of sync (a full resync from the first leg), even one that checks and fits.</summary>
    [Parameter]
    public SwitchParameter ResetLog { get; set; }

    [Parameter]
    [ValidateRange(1, 1 << 16)]
    public int RequestPoolSize { get; set; } = 64;

    /// <summary>Limits recovery to this many bytes per second (0: unlimited), so a resync does not starve other I/O.</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long RecoveryBytesPerSecond { get; set; }

    /// <summary>Use legs that are mounted, held open by another program, or hold data the recovery would overwrite.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void EndProcessing()
    {
        if (KcopydSession.MirrorExists(Name))
        {
            ThrowTerminatingError(ErrorRecords.Create("MirrorExists", ErrorCategory.ResourceExists, Name, $"A mirror device named '{Name}' exists already."));
        }
        var devices = new DeviceScope(this);
        MirrorDevice? mirror = null;
        try
        {
            var legs = Leg.Select(l => devices.OpenForWrite(l, Force, asLeg: true)).ToArray();
            string? logPath = LogPath == null ? null : SessionState.Path.GetUnresolvedProviderPathFromPSPath(LogPath);
            if (!NoSync && !Force)
            {
                // Legs the mirror's own log knows are its own: re-creating a mirror from its log needs no -Force.
                var known = logPath == null || ResetLog
                    ? new HashSet<string>()
                    : DiskDirtyLog.RecordedLegIds(logPath, MirrorDevice.LogPlacementCheck(legs, logPath));
                foreach (var leg in legs.Skip(1).Where(l => !known.Contains(LegIdentity.Of(l))))
                    LegChecks.RefuseIfHoldsData(leg, "a leg after the first");
            }
            string action = NoSync
                ? $"Create mirror '{Name}' without initial recovery"
                : $"Create mirror '{Name}' and overwrite every leg after the first with {legs[0].Name}";
            if (!ShouldProcess(string.Join(", ", legs.Select(l => l.Name)), action))
            {
                devices.CloseAll();
                return;
            }
            mirror = new MirrorDevice(legs, new MirrorOptions
            {
                Name = Name,
                RegionSizeBytes = RegionSize,
                LogPath = logPath,
                NoSync = NoSync,
                ResetLog = ResetLog,
                RequestPoolSize = RequestPoolSize,
                RecoveryBytesPerSecond = RecoveryBytesPerSecond,
            });
            KcopydSession.AddMirror(mirror, devices.Opened);
        }
        catch (KcopydException ex)
        {
            mirror?.Dispose();
            devices.CloseAll();
            ThrowTerminatingError(ErrorRecords.From(ex));
            return;
        }
        catch
        {
            // Whatever failed, no leg stays open (exclusively) behind the admin's back.
            mirror?.Dispose();
            devices.CloseAll();
            throw;
        }
        // A log's in-sync regions are identical on its alive legs; a leg that differs there is not the storage the log
        // knew, whatever its identity says (an image file deleted and re-created under the same inode): serving reads
        // from it would be stale data. (-NoSync is the admin saying the legs are identical; it warns from a sample itself.)
        if (!NoSync && mirror.LogWasReused && mirror.FindSampledInSyncDifference() is { } differs)
        {
            string defaultLeg = mirror.DefaultLeg.Name, log = mirror.GetStatus().LogPath ?? "";
            KcopydSession.RemoveMirror(mirror.Name);
            ThrowTerminatingError(ErrorRecords.From(new KcopydException("LegIdentityMismatch", KcopydErrorKind.InvalidArgument,
                $"The mirror log '{log}' does not fit these legs: '{differs.Leg}' differs from the default leg '{defaultLeg}' at byte " +
                $"{differs.OffsetBytes}, in a region the log records in sync, so it is not the device the log knew (an image file " +
                "re-created under a reused inode, or a leg written outside the mirror). The mirror was not created; with the leg that " +
                "holds the data first, -ResetLog resyncs every other leg from it.", log)));
            return;
        }
        if (NoSync && mirror.FindSampledDifference() is { } offset)
            WriteWarning($"-NoSync trusts the legs of mirror '{Name}' to be identical, but they differ at byte {offset} (a sample of the legs was compared). " +
                         "Run Test-MirrorDevice -Repair, or re-create the mirror without -NoSync.");
        WriteObject(mirror.GetStatus());
    }
}
