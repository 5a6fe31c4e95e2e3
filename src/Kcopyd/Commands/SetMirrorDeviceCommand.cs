using System.Management.Automation;
using Kcopyd.Engine.Mirror;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Changes a running mirror device: its recovery throttle.</summary>
[Cmdlet(VerbsCommon.Set, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(MirrorStatus))]
public sealed class SetMirrorDeviceCommand : PSCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    public string[] Name { get; set; } = null!;

    /// <summary>Limits recovery to this many bytes per second; 0 lifts the limit.</summary>
    [Parameter(Mandatory = true)]
    [ValidateRange(0, long.MaxValue)]
    public long RecoveryBytesPerSecond { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var mirror in MirrorSelection.Select(this, Name))
        {
            if (!ShouldProcess(mirror.Name, $"Limit recovery to {RecoveryBytesPerSecond} bytes per second")) continue;
            mirror.RecoveryThrottle.BytesPerSecond = RecoveryBytesPerSecond;
            if (PassThru) WriteObject(mirror.GetStatus());
        }
    }
}
