using System.Management.Automation;
using Kcopyd.Protocol;

namespace Kcopyd.Commands;

/// <summary>Sets how many finished copy jobs the host lists, and for how long; kept in its state directory.</summary>
[Cmdlet(VerbsCommon.Set, "KcopydHost", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(HostInfo))]
public sealed class SetKcopydHostCommand : HostCommand
{
    /// <summary>Finished jobs listed at most; older ones leave the list first.</summary>
    [Parameter]
    [ValidateRange(0, 10_000_000)]
    public int JobHistoryCount { get; set; }

    /// <summary>How long a finished job stays listed.</summary>
    [Parameter]
    public TimeSpan JobHistoryMaxAge { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void EndProcessing()
    {
        var change = new HostSettingsChange
        {
            JobHistoryCount = MyInvocation.BoundParameters.ContainsKey(nameof(JobHistoryCount)) ? JobHistoryCount : null,
            JobHistoryMaxAge = MyInvocation.BoundParameters.ContainsKey(nameof(JobHistoryMaxAge)) ? JobHistoryMaxAge : null,
        };
        if (CallOrWriteError<HostInfo?>(ControlMethods.SetHost, change) is { } info && PassThru) WriteObject(info);
    }
}
