using System.Management.Automation;
using Kcopyd.Commands;
using Kcopyd.Connection;
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

    /// <summary>
    /// With nobody to show progress to, one WaitJob call waits this long (the host's own longest wait): polling four
    /// times a second cost the waiting pwsh a third of a core in JIT for its first seconds, taken from the copy.
    /// </summary>
    private const int QuietIntervalMilliseconds = 10_000;

    /// <summary>How long each WaitJob call of a cmdlet may wait: short while progress is shown, long otherwise.</summary>
    public static int Interval(PSCmdlet cmdlet) => ShowsProgress(cmdlet) ? IntervalMilliseconds : QuietIntervalMilliseconds;

    /// <summary>
    /// False under -ProgressAction or $ProgressPreference SilentlyContinue or Ignore (as runbooks set it), when no
    /// progress record would be drawn.
    /// </summary>
    public static bool ShowsProgress(PSCmdlet cmdlet)
    {
        object? chosen = cmdlet.MyInvocation.BoundParameters.TryGetValue("ProgressAction", out object? bound)
            ? bound
            : cmdlet.GetVariableValue("ProgressPreference");
        if (chosen is PSObject wrapped) chosen = wrapped.BaseObject;
        var preference = chosen switch
        {
            ActionPreference p => p,
            string text when Enum.TryParse(text, true, out ActionPreference p) => p,
            _ => ActionPreference.Continue,
        };
        return preference is not (ActionPreference.SilentlyContinue or ActionPreference.Ignore);
    }

    /// <summary>The job when it ended. Ctrl+C ends the wait with a warning (PipelineStoppedException); the job goes on.</summary>
    public static CopyJobInfo Wait(HostCommand cmdlet, CopyJobInfo job, string activity)
    {
        var host = cmdlet.LastChannel ?? HostConnection.Get()!; // the host that answered with the job
        int interval = Interval(cmdlet);
        try
        {
            while (!job.IsFinished)
            {
                cmdlet.WriteProgress(Progress(job, activity));
                job = cmdlet.CallOn<CopyJobInfo>(host, ControlMethods.WaitJob, job.Id, interval);
            }
        }
        catch (PipelineStoppedException)
        {
            WarnStoppedWaiting(cmdlet, job.Id);
            throw;
        }
        finally
        {
            // Completed also when Ctrl+C ended the wait: the bar goes, the job goes on.
            var last = Progress(job, activity);
            last.RecordType = ProgressRecordType.Completed;
            cmdlet.WriteProgress(last);
        }
        return job;
    }

    /// <summary>A new record each time: one written may still be read (a job's Progress stream) and must not change.</summary>
    public static ProgressRecord Progress(CopyJobInfo job, string activity)
    {
        var record = new ProgressRecord(ActivityId(job), activity, Describe(job))
        {
            PercentComplete = (int)Math.Clamp(job.PercentComplete, 0, 100),
            RecordType = job.IsFinished ? ProgressRecordType.Completed : ProgressRecordType.Processing,
        };
        if (job.BytesPerSecond > 0 && !job.IsFinished)
            record.SecondsRemaining = (int)Math.Min(int.MaxValue, (job.BytesTotal - job.BytesCopied - job.BytesZeroed - job.BytesSkipped) / job.BytesPerSecond);
        return record;
    }

    /// <summary>What a cmdlet shows while it copies or zeroes a region.</summary>
    public static string Activity(CopyJobInfo job)
        => job.Source == null ? $"Zeroing {string.Join(", ", job.Destination)}" : $"Copying {job.Source}";

    private static int ActivityId(CopyJobInfo job) => (int)(job.Id % int.MaxValue);

    /// <summary>
    /// Ctrl+C ended a wait, not the job: says so, on the host's console directly, since the pipeline is stopping and
    /// takes no more records.
    /// </summary>
    public static void WarnStoppedWaiting(PSCmdlet cmdlet, long id)
        => cmdlet.Host.UI.WriteWarningLine($"Stopped waiting for copy job {id}; it goes on in the Kcopyd host. " +
            $"Wait-CopyJob -Id {id} waits again, Stop-CopyJob -Id {id} stops it.");

    /// <summary>A job that has ended, at once or after a wait: its warnings, and its failure as an error record.</summary>
    public static void Report(PSCmdlet cmdlet, CopyJobInfo job)
    {
        foreach (string warning in job.Warnings) cmdlet.WriteWarning(warning);
        if (Failure(job) is { } error) cmdlet.WriteError(error);
    }

    /// <summary>
    /// A failed job's error, with its ErrorId (CopyReadFailed, CopyWriteFailed or VerifyMismatch), the job as target
    /// and a category from its errno; null otherwise.
    /// </summary>
    public static ErrorRecord? Failure(CopyJobInfo job)
    {
        if (job.State != nameof(CopyJobState.Failed)) return null;
        var category = job.Errno switch
        {
            "EROFS" or "EACCES" or "EPERM" => ErrorCategory.PermissionDenied,
            "ENXIO" or "ENODEV" or "ENOTCONN" or "ESHUTDOWN" => ErrorCategory.ResourceUnavailable, // the device is gone
            _ => job.ReadError ? ErrorCategory.ReadError : ErrorCategory.WriteError, // EIO, ENOSPC...
        };
        return ErrorRecords.Create(job.ReadError ? "CopyReadFailed" : job.WriteErrors.Length == 0 && job.Mismatches.Length > 0 ? "VerifyMismatch" : "CopyWriteFailed", category, job, $"Copy job {job.Id} failed: {job.Error ?? "the copy failed."}");
    }

    /// <summary>
    /// The started job, as the cmdlet was asked to give it: a PowerShell job (-AsJob) that follows it; with -Wait, the
    /// job at its end after showing its progress; else the job as the host answered. A job that has failed by then
    /// (one that fails at its first I/O does within the host's first wait) writes its error with or without -Wait.
    /// </summary>
    public static void Output(JobCommand cmdlet, CopyJobInfo job)
    {
        if (cmdlet.AsJob)
        {
            cmdlet.WriteObject(Jobs.KcopydCopyJob.Start(cmdlet, HostConnection.Get()!, job));
            return;
        }
        if (cmdlet.Wait) job = Wait(cmdlet, job, Activity(job));
        if (job.IsFinished) Report(cmdlet, job);
        cmdlet.WriteObject(job);
    }

    public static string Describe(CopyJobInfo job)
        => $"{Units.Size(job.BytesCopied)} of {Units.Size(job.BytesTotal)} at {Units.Rate(job.BytesPerSecond)}";
}
