using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>
/// Creates a mirror device (dm-raid1) over 2 or more legs: block devices, image files or other mirrors. Unless
/// -NoSync, recovery starts at once and copies every out-of-sync region from the first leg to the others.
/// </summary>
[Cmdlet(VerbsCommon.New, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(MirrorInfo))]
public sealed class NewMirrorDeviceCommand : HostCommand
{
    [Parameter(Mandatory = true, Position = 0)]
    [ValidatePattern("^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    public string Name { get; set; } = null!;

    /// <summary>The legs; the first is the default leg that recovery copies from.</summary>
    // 2 to 9 legs, counted by the host (TooFewLegs, TooManyLegs): the ids the README promises, not a validation error.
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    [DeviceArgumentTransformation]
    [ArgumentCompleter(typeof(DevicePathCompleter))]
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

    /// <summary>
    /// Fail a leg as Hung when it leaves a request unanswered this many seconds (0: never); 30 by default, SCSI's
    /// command timeout. Writes then go on to the other legs, acknowledged, and the mirror is Degraded.
    /// </summary>
    [Parameter]
    public int LegTimeoutSeconds { get; set; } = -1;

    /// <summary>Use legs that are mounted, held open by another program, or hold data the recovery would overwrite.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void EndProcessing()
    {
        var request = new NewMirrorRequest
        {
            Name = Name,
            Legs = Leg.Select(l => l.ToRef(this)).ToArray(),
            RegionSize = RegionSize,
            LogPath = LogPath == null ? null : SessionState.Path.GetUnresolvedProviderPathFromPSPath(LogPath),
            NoSync = NoSync,
            ResetLog = ResetLog,
            RequestPoolSize = RequestPoolSize,
            RecoveryBytesPerSecond = RecoveryBytesPerSecond,
            Force = Force,
            LegTimeoutSeconds = MyInvocation.BoundParameters.ContainsKey(nameof(LegTimeoutSeconds)) ? LegTimeoutSeconds : null,
        };
        // The host opens and checks the legs and the log, asks to go on, then keeps the mirror and its definition.
        if (CallOrWriteError<MirrorInfo?>(ControlMethods.NewMirror, request) is { } mirror) WriteObject(mirror);
    }
}
