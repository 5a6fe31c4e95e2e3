using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Changes a running mirror device: its recovery throttle.</summary>
[Cmdlet(VerbsCommon.Set, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(MirrorInfo))]
public sealed class SetMirrorDeviceCommand : HostCommand
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(MirrorNameCompleter))]
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
            if (CallOrWriteError<MirrorInfo?>(ControlMethods.SetMirror, mirror.Name, RecoveryBytesPerSecond) is { } status && PassThru) WriteObject(status);
        }
    }
}
