using System.Management.Automation;
using Kcopyd.Engine.Copy;

namespace Kcopyd.Session;

/// <summary>Shows a job's progress until it ends; stopping the pipeline (Ctrl+C) stops the job and returns within seconds.</summary>
internal static class JobProgress
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(2);

    public static void WaitWithProgress(PSCmdlet cmdlet, CopyJob job, string activity, Func<bool> stopping)
    {
        var record = new ProgressRecord((int)(job.Id % int.MaxValue), activity, Describe(job));
        while (!job.Wait(Interval))
        {
            if (stopping())
            {
                // Ctrl+C must give the shell back even when a device hangs with I/O in flight: the job goes on
                // stopping by itself (Get-CopyJob shows it) once that I/O returns.
                job.Stop();
                job.Wait(StopGrace);
                break;
            }
            record.StatusDescription = Describe(job);
            record.PercentComplete = (int)Math.Clamp(job.PercentComplete, 0, 100);
            long rate = job.BytesPerSecond;
            if (rate > 0) record.SecondsRemaining = (int)Math.Min(int.MaxValue, (job.BytesTotal - job.BytesCopied) / rate);
            cmdlet.WriteProgress(record);
        }
        record.RecordType = ProgressRecordType.Completed;
        cmdlet.WriteProgress(record);
    }

    private static string Describe(CopyJob job)
        => $"{Size(job.BytesCopied)} of {Size(job.BytesTotal)} at {Size(job.BytesPerSecond)}/s";

    private static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.00} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.0} MiB",
        _ => $"{bytes / 1024.0:0} KiB",
    };
}
