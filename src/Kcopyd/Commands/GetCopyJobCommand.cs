using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Engine.Copy;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Gets the copy jobs of the Kcopyd host, whichever session started them: running ones and the finished ones still listed.</summary>
[Cmdlet(VerbsCommon.Get, "CopyJob")]
[OutputType(typeof(CopyJobInfo))]
public sealed class GetCopyJobCommand : HostCommand
{
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(CopyJobIdCompleter))]
    public long[]? Id { get; set; }

    [Parameter]
    public CopyJobState[]? State { get; set; }

    /// <summary>Lists the jobs the host runs for itself (mirror recovery copies, negative ids) after the admin's.</summary>
    [Parameter]
    public SwitchParameter IncludeInternal { get; set; }

    protected override void ProcessRecord()
    {
        var jobs = JobSelection.Select(this, Id);
        if (Id == null && IncludeInternal) jobs = jobs.Concat(Call<CopyJobInfo[]>(ControlMethods.GetInternalJobs));
        foreach (var job in jobs)
            if (State == null || State.Any(s => s.ToString() == job.State)) WriteObject(job);
    }
}

/// <summary>The jobs with these ids (an error for each id the host does not list), or all of them.</summary>
internal static class JobSelection
{
    public static IEnumerable<CopyJobInfo> Select(HostCommand cmdlet, long[]? ids)
    {
        if (ids == null) return cmdlet.Call<CopyJobInfo[]>(ControlMethods.GetJobs, [null]);
        var found = new List<CopyJobInfo>();
        foreach (long id in ids) found.AddRange(cmdlet.CallOrWriteError<CopyJobInfo[]>(ControlMethods.GetJobs, new long[] { id }) ?? []);
        return found;
    }
}
