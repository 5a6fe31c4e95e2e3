using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Protocol;

namespace Kcopyd.Commands;

/// <summary>
/// Stops copy jobs: no new chunk starts, chunks in flight finish, and each job ends as Stopped. Returns within a few
/// seconds even when a device hangs: the job is then Stopping until its I/O in flight returns, which is said.
/// </summary>
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
            if (CallOrWriteError<CopyJobInfo?>(ControlMethods.StopJob, id) is not { } job) continue;
            if (job.State == nameof(Engine.Copy.CopyJobState.Stopping))
                WriteWarning($"Copy job {id} is Stopping: {job.IoInFlight} I/O request(s) it issued have not returned (a hung device?). " +
                             "I/O in the kernel cannot be taken back; the job becomes Stopped, and its pages go back to its client, when it does.");
            if (PassThru) WriteObject(job);
        }
    }
}
