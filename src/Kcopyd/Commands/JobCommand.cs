using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>What every cmdlet that starts a copy job takes: the client it runs on, -Wait, and -Force.</summary>
public abstract class JobCommand : HostCommand
{
    [Parameter]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(ClientNameCompleter))]
    public string Client { get; set; } = "default";

    /// <summary>This job copies at most this many bytes per second, on top of its client's throttle; 0 (the default) is unlimited.</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long BytesPerSecond { get; set; }

    /// <summary>Show progress until the job ends, then output it. Ctrl+C stops waiting; the job goes on in the host.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    /// <summary>
    /// Return a PowerShell job (Get-Job, Wait-Job, Receive-Job, Stop-Job, Remove-Job) that follows the copy job in the
    /// host. Confirmation is asked first; -WhatIf starts no job. Not with -Wait (Wait-Job waits for it).
    /// </summary>
    [Parameter]
    public SwitchParameter AsJob { get; set; }

    /// <summary>Write to devices that are mounted or held open exclusively by another program.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>The cmdlet follows the job it starts (-Wait, or its PowerShell job): the host keeps it listed until then.</summary>
    internal bool Follows => Wait || AsJob;

    /// <summary>-AsJob and -Wait ask for two ways of following one job: refused before anything is opened or asked.</summary>
    protected override void BeginProcessing()
    {
        if (Wait && AsJob)
            ThrowTerminatingError(ErrorRecords.Create("AsJobWithWait", ErrorCategory.InvalidArgument, null,
                "-AsJob and -Wait cannot be used together: with -AsJob, wait for the job with Wait-Job (or Receive-Job -Wait)."));
        base.BeginProcessing();
    }

    /// <summary>
    /// True when ShouldProcess is sure to say yes and write nothing: -Confirm:$false turns the prompt off whatever
    /// $ConfirmPreference says, and without -WhatIf (or $WhatIfPreference) and -Verbose (or $VerbosePreference) it
    /// prints nothing either. Then the host starts the job without asking back, which saves a round trip per job.
    /// </summary>
    internal bool WouldProcessUnasked
    {
        get
        {
            var bound = MyInvocation.BoundParameters;
            bool confirmOff = bound.TryGetValue("Confirm", out var confirm) && !(SwitchParameter)confirm;
            bool whatIf = bound.TryGetValue("WhatIf", out var w) ? (SwitchParameter)w : IsTrue(GetVariableValue("WhatIfPreference"));
            return confirmOff && !whatIf && !ShowsVerbose;
        }
    }

    /// <summary>-Verbose, or $VerbosePreference, shows verbose lines: the host then sends what the engine decided for the job.</summary>
    internal bool ShowsVerbose
        => MyInvocation.BoundParameters.TryGetValue("Verbose", out var v)
            ? (SwitchParameter)v
            : GetVariableValue("VerbosePreference") is not ActionPreference.SilentlyContinue and not ActionPreference.Ignore;

    private static bool IsTrue(object? value) => value switch
    {
        bool b => b,
        SwitchParameter s => s.IsPresent,
        PSObject o => IsTrue(o.BaseObject),
        _ => false,
    };
}
