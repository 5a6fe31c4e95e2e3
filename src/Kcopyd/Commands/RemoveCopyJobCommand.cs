using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Engine.Copy;
using Kcopyd.Protocol;

namespace Kcopyd.Commands;

/// <summary>Removes finished copy jobs from the host's list; a running job is refused (stop it first).</summary>
[Cmdlet(VerbsCommon.Remove, "CopyJob", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = ById)]
[OutputType(typeof(void))]
public sealed class RemoveCopyJobCommand : HostCommand
{
    private const string ById = "Id";
    private const string ByState = "State";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = ById)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(CopyJobIdCompleter))]
    public long[] Id { get; set; } = null!;

    /// <summary>Every listed job in these states (Completed, Failed, Stopped).</summary>
    [Parameter(Mandatory = true, ParameterSetName = ByState)]
    [ValidateSet(nameof(CopyJobState.Completed), nameof(CopyJobState.Failed), nameof(CopyJobState.Stopped))]
    public CopyJobState[] State { get; set; } = null!;

    protected override void ProcessRecord()
    {
        long[] ids = ParameterSetName == ByState
            ? Call<CopyJobInfo[]>(ControlMethods.GetJobs, [null]).Where(j => State.Any(s => s.ToString() == j.State)).Select(j => j.Id).ToArray()
            : Id;
        foreach (long id in ids) CallOrWriteError<bool>(ControlMethods.RemoveJob, id);
    }
}
