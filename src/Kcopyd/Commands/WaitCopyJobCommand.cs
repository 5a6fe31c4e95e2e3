using System.Diagnostics;
using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Waits for copy jobs to end, showing progress, and outputs them; Ctrl+C stops the waiting, not the jobs.</summary>
[Cmdlet(VerbsLifecycle.Wait, "CopyJob")]
[OutputType(typeof(CopyJobInfo))]
public sealed class WaitCopyJobCommand : HostCommand
{
    private readonly List<long> _ids = [];

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(CopyJobIdCompleter))]
    public long[] Id { get; set; } = null!;

    /// <summary>Seconds to wait at most; by default, for ever. A job still running then is output as it is, with an error.</summary>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int TimeoutSeconds { get; set; } = -1;

    protected override void ProcessRecord() => _ids.AddRange(Id);

    /// <summary>A new record each time: one written may still be read and must not change.</summary>
    private static ProgressRecord Progress(CopyJobInfo job, ProgressRecordType type)
        => new((int)(job.Id % int.MaxValue), $"Waiting for copy job {job.Id}", $"{job.PercentComplete:0.#} % of {Units.Size(job.BytesTotal)}")
        {
            PercentComplete = (int)Math.Clamp(job.PercentComplete, 0, 100),
            RecordType = type,
        };

    protected override void EndProcessing()
    {
        var elapsed = Stopwatch.StartNew();
        int interval = JobProgress.Interval(this);
        foreach (var start in JobSelection.Select(this, [.. _ids]))
        {
            var job = start;
            var host = LastChannel!; // the host that listed the job: a new one would not know it
            while (!job.IsFinished)
            {
                long left = TimeoutSeconds < 0 ? interval : Math.Min(interval, TimeoutSeconds * 1000L - elapsed.ElapsedMilliseconds);
                if (left <= 0)
                {
                    WriteError(ErrorRecords.Create("CopyJobWaitTimeout", ErrorCategory.OperationTimeout, job,
                        $"Copy job {job.Id} is still {job.State} after {TimeoutSeconds} s ({job.PercentComplete:0.#} %)."));
                    break;
                }
                WriteProgress(Progress(job, ProgressRecordType.Processing));
                try
                {
                    job = CallOn<CopyJobInfo>(host, ControlMethods.WaitJob, job.Id, (int)left);
                }
                catch (PipelineStoppedException)
                {
                    JobProgress.WarnStoppedWaiting(this, job.Id);
                    throw;
                }
            }
            WriteProgress(Progress(job, ProgressRecordType.Completed));
            if (job.IsFinished) JobProgress.Report(this, job);
            WriteObject(job);
        }
    }
}
