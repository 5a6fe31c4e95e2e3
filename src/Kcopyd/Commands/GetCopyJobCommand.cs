using System.Management.Automation;
using Kcopyd.Engine.Copy;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Gets the copy jobs of the Kcopyd host, whichever session started them: running ones and the finished ones still listed.</summary>
[Cmdlet(VerbsCommon.Get, "CopyJob")]
[OutputType(typeof(CopyJobInfo))]
public sealed class GetCopyJobCommand : HostCommand
{
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public long[]? Id { get; set; }

    [Parameter]
    public CopyJobState[]? State { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var job in JobSelection.Select(this, Id))
            if (State == null || State.Contains(job.State)) WriteObject(job);
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
