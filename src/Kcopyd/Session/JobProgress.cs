using System.Management.Automation;
using Kcopyd.Commands;
using Kcopyd.Engine.Copy;
using Kcopyd.Protocol;

namespace Kcopyd.Session;

/// <summary>
/// Follows a job in the host until it ends, showing progress. Ctrl+C stops the waiting, not the job, and says so:
/// the job's id and how to stop it or wait again.
/// </summary>
internal static class JobProgress
{
    private const int IntervalMilliseconds = 250;

    /// <summary>The job when it ended; null when the wait was stopped (the job goes on).</summary>
    public static CopyJobInfo? Wait(HostCommand cmdlet, CopyJobInfo job, string activity)
    {
        var record = new ProgressRecord((int)(job.Id % int.MaxValue), activity, Describe(job));
        try
        {
            while (!job.IsFinished)
            {
                record.StatusDescription = Describe(job);
                record.PercentComplete = (int)Math.Clamp(job.PercentComplete, 0, 100);
                if (job.BytesPerSecond > 0)
                    record.SecondsRemaining = (int)Math.Min(int.MaxValue, (job.BytesTotal - job.BytesCopied) / job.BytesPerSecond);
                cmdlet.WriteProgress(record);
                job = cmdlet.Call<CopyJobInfo>(ControlMethods.WaitJob, job.Id, IntervalMilliseconds);
            }
        }
        catch (PipelineStoppedException)
        {
            WarnStoppedWaiting(cmdlet, job.Id);
            throw;
        }
        finally
        {
            record.RecordType = ProgressRecordType.Completed;
            cmdlet.WriteProgress(record);
        }
        return job;
    }

    /// <summary>
    /// Ctrl+C ended a wait, not the job: says so, on the host's console directly, since the pipeline is stopping and
    /// takes no more records.
    /// </summary>
    public static void WarnStoppedWaiting(PSCmdlet cmdlet, long id)
        => cmdlet.Host.UI.WriteWarningLine($"Stopped waiting for copy job {id}; it goes on in the Kcopyd host. " +
            $"Wait-CopyJob -Id {id} waits again, Stop-CopyJob -Id {id} stops it.");

    /// <summary>After a wait: the job's warnings, and its failure as an error record; then the job.</summary>
    public static void Report(PSCmdlet cmdlet, CopyJobInfo job)
    {
        foreach (string warning in job.Warnings) cmdlet.WriteWarning(warning);
        if (job.State == nameof(CopyJobState.Failed))
        {
            var category = job.ReadError ? ErrorCategory.ReadError : ErrorCategory.WriteError;
            cmdlet.WriteError(ErrorRecords.Create(job.ReadError ? "CopyReadFailed" : "CopyWriteFailed", category, job, job.Error ?? "The copy failed."));
        }
    }

    /// <summary>With -Wait, follows the job to its end and reports it; then outputs it.</summary>
    public static void Output(HostCommand cmdlet, CopyJobInfo job, bool wait, string activity)
    {
        if (wait)
        {
            job = Wait(cmdlet, job, activity)!;
            Report(cmdlet, job);
        }
        cmdlet.WriteObject(job);
    }

    private static string Describe(CopyJobInfo job)
        => $"{Units.Size(job.BytesCopied)} of {Units.Size(job.BytesTotal)} at {Units.Rate(job.BytesPerSecond)}";
}
