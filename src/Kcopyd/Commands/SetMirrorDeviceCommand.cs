using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Changes a running mirror device: its recovery throttle, its leg timeout.</summary>
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
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long RecoveryBytesPerSecond { get; set; }

    /// <summary>Fail a leg as Hung when it leaves a request unanswered this many seconds; 0: never.</summary>
    [Parameter]
    public int LegTimeoutSeconds { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var mirror in MirrorSelection.Select(this, Name))
        {
            long? rate = MyInvocation.BoundParameters.ContainsKey(nameof(RecoveryBytesPerSecond)) ? RecoveryBytesPerSecond : null;
            int? timeout = MyInvocation.BoundParameters.ContainsKey(nameof(LegTimeoutSeconds)) ? LegTimeoutSeconds : null;
            if (CallOrWriteError<MirrorInfo?>(ControlMethods.SetMirror, mirror.Name, rate, timeout) is { } status && PassThru) WriteObject(status);
        }
    }
}
