using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Protocol;

namespace Kcopyd.Commands;

/// <summary>Stops copy jobs: no new chunk starts, chunks in flight finish, and each job ends as Stopped.</summary>
[Cmdlet(VerbsLifecycle.Stop, "CopyJob", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(CopyJobInfo))]
public sealed class StopCopyJobCommand : HostCommand
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(CopyJobIdCompleter))]
    public long[] Id { get; set; } = null!;

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        foreach (long id in Id)
        {
            if (CallOrWriteError<CopyJobInfo?>(ControlMethods.StopJob, id) is { } job && PassThru) WriteObject(job);
        }
    }
}
