using Kcopyd.Engine.Copy;

namespace Kcopyd.Protocol;

/// <summary>
/// A copy job as the host saw it at <see cref="Timestamp"/>: the property names scripts use (DESIGN.md), plain values
/// that format as tables and survive Export-Clixml, ConvertTo-Json and remoting (the state is its name, a string).
/// Get-CopyJob or Wait-CopyJob gives a newer one.
/// </summary>
public sealed class CopyJobInfo
{
    public long Id { get; set; }
    public string Client { get; set; } = "";
    /// <summary>A name of <see cref="CopyJobState"/>: Queued, Running, Stopping, Completed, Failed or Stopped.</summary>
    public string State { get; set; } = nameof(CopyJobState.Queued);
    /// <summary>Null for a zeroing job.</summary>
    public string? Source { get; set; }
    public long SourceOffset { get; set; }
    public string[] Destination { get; set; } = [];
    public long[] DestinationOffset { get; set; } = [];
    public long BytesTotal { get; set; }
    public long BytesCopied { get; set; }
    public double PercentComplete { get; set; }
    public long BytesPerSecond { get; set; }
    /// <summary>The job's own rate limit (Start-RegionCopy -BytesPerSecond); 0 for none. Its client's throttle applies too.</summary>
    public long MaxBytesPerSecond { get; set; }
    public DateTime? StartTime { get; set; }
    public DateTime? EndTime { get; set; }
    /// <summary>How long the job ran: until <see cref="Timestamp"/> while it runs, until EndTime once it ended; null while queued.</summary>
    public TimeSpan? ElapsedTime { get; set; }
    public bool IgnoreErrors { get; set; }
    public bool ReadError { get; set; }
    public string[] WriteErrors { get; set; } = [];
    public string? Error { get; set; }
    /// <summary>The symbolic errno a failed read or write returned (EIO, ENOSPC, EROFS, ENXIO...); null when none failed.</summary>
    public string? Errno { get; set; }
    public string[] Warnings { get; set; } = [];
    /// <summary>
    /// The moment the job's bytes, rate and state are of: when the host answered for a queued or running job, when it
    /// ended for a finished one (which then no longer changes).
    /// </summary>
    public DateTime Timestamp { get; set; }
    /// <summary>Bytes of zero chunks and holes zeroed on the destinations instead of written (-Sparse).</summary>
    public long BytesZeroed { get; set; }
    /// <summary>Bytes of zero chunks and holes not written at all (-DestinationIsZero).</summary>
    public long BytesSkipped { get; set; }
    /// <summary>Bytes a copy map (-MapPath) held as finished by an earlier run: not copied again; BytesCopied excludes them.</summary>
    public long BytesFromMap { get; set; }
    /// <summary>The copy map (-MapPath) the job keeps; null without one.</summary>
    public string? MapPath { get; set; }
    /// <summary>The job re-read every destination and compared it with the source (-Verify).</summary>
    public bool Verify { get; set; }
    /// <summary>With -Verify: the ranges of a destination that did not read back as the source, merged; the job failed.</summary>
    public CopyMismatchInfo[] Mismatches { get; set; } = [];

    /// <summary>A job the host runs for itself (a mirror's recovery copy, a negative Id): listed by Get-CopyJob -IncludeInternal.</summary>
    public bool Internal { get; set; }

    /// <summary>
    /// I/O requests handed to the devices and not answered yet. A Stopping job waits for them (a hung device holds
    /// them): I/O already in the kernel cannot be taken back, and its pages stay the job's until it returns.
    /// </summary>
    public int IoInFlight { get; set; }

    public bool IsFinished => State is nameof(CopyJobState.Completed) or nameof(CopyJobState.Failed) or nameof(CopyJobState.Stopped);

    public static CopyJobInfo Of(CopyJob job)
    {
        var now = DateTime.Now;
        var start = job.StartTime;
        var end = job.EndTime;
        return new()
        {
            Id = job.Id,
            Client = job.Client,
            State = job.State.ToString(),
            Source = job.Source,
            SourceOffset = job.SourceOffset,
            Destination = job.Destination,
            DestinationOffset = job.DestinationOffset,
            BytesTotal = job.BytesTotal,
            BytesCopied = job.BytesCopied,
            PercentComplete = job.PercentComplete,
            BytesPerSecond = job.BytesPerSecond,
            MaxBytesPerSecond = job.MaxBytesPerSecond,
            StartTime = start,
            EndTime = end,
            ElapsedTime = start is { } started ? (end ?? now) - started : null,
            IgnoreErrors = job.IgnoreErrors,
            ReadError = job.ReadError,
            WriteErrors = job.WriteErrors,
            Error = job.Error,
            Errno = job.ErrnoName,
            Warnings = job.Warnings,
            Timestamp = now,
            Internal = job.Internal,
            IoInFlight = job.IoInFlight,
            BytesZeroed = job.BytesZeroed,
            BytesSkipped = job.BytesSkipped,
            Verify = job.Verify,
            BytesFromMap = job.BytesFromMap,
            MapPath = job.MapPath,
            Mismatches = job.Mismatches.Select(CopyMismatchInfo.Of).ToArray(),
        };
    }

    public override string ToString() => $"CopyJob {Id} ({State}, {Units.Size(BytesCopied)} of {Units.Size(BytesTotal)})";
}
