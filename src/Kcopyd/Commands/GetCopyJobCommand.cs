using System.Management.Automation;
using Kcopyd.Engine.Copy;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Gets the copy jobs started in this session, live: their properties change as they run.</summary>
[Cmdlet(VerbsCommon.Get, "CopyJob")]
[OutputType(typeof(CopyJob))]
public sealed class GetCopyJobCommand : PSCmdlet
{
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public long[]? Id { get; set; }

    [Parameter]
    public CopyJobState[]? State { get; set; }

    protected override void ProcessRecord()
    {
        if (Id == null)
        {
            foreach (var job in KcopydSession.Jobs)
                if (State == null || State.Contains(job.State)) WriteObject(job);
            return;
        }
        foreach (long id in Id)
        {
            var job = KcopydSession.FindJob(id);
            if (job == null)
                WriteError(ErrorRecords.Create("CopyJobNotFound", ErrorCategory.ObjectNotFound, id, $"There is no copy job with Id {id}."));
            else if (State == null || State.Contains(job.State))
                WriteObject(job);
        }
    }
}
