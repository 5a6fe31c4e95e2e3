using Kcopyd.Engine.Copy;

namespace Kcopyd.Protocol;

/// <summary>
/// A copy job as the host saw it when it answered: the property names scripts use (DESIGN.md), plain values
/// that format as tables and survive Export-Clixml and remoting. Get-CopyJob or Wait-CopyJob gives a newer one.
/// </summary>
public sealed class CopyJobInfo
{
    public long Id { get; set; }
    public string Client { get; set; } = "";
    public CopyJobState State { get; set; }
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
    public bool IgnoreErrors { get; set; }
    public bool ReadError { get; set; }
    public string[] WriteErrors { get; set; } = [];
    public string? Error { get; set; }
    public string[] Warnings { get; set; } = [];
    /// <summary>Bytes of zero chunks and holes zeroed on the destinations instead of written (-Sparse).</summary>
    public long BytesZeroed { get; set; }
    /// <summary>Bytes of zero chunks and holes not written at all (-DestinationIsZero).</summary>
    public long BytesSkipped { get; set; }
    /// <summary>The job re-read every destination and compared it with the source (-Verify).</summary>
    public bool Verify { get; set; }
    /// <summary>With -Verify: the ranges of a destination that did not read back as the source, merged; the job failed.</summary>
    public CopyMismatchInfo[] Mismatches { get; set; } = [];

    public bool IsFinished => State is CopyJobState.Completed or CopyJobState.Failed or CopyJobState.Stopped;

    public static CopyJobInfo Of(CopyJob job) => new()
    {
        Id = job.Id,
        Client = job.Client,
        State = job.State,
        Source = job.Source,
        SourceOffset = job.SourceOffset,
        Destination = job.Destination,
        DestinationOffset = job.DestinationOffset,
        BytesTotal = job.BytesTotal,
        BytesCopied = job.BytesCopied,
        PercentComplete = job.PercentComplete,
        BytesPerSecond = job.BytesPerSecond,
        MaxBytesPerSecond = job.MaxBytesPerSecond,
        StartTime = job.StartTime,
        EndTime = job.EndTime,
        IgnoreErrors = job.IgnoreErrors,
        ReadError = job.ReadError,
        WriteErrors = job.WriteErrors,
        Error = job.Error,
        Warnings = job.Warnings,
        BytesZeroed = job.BytesZeroed,
        BytesSkipped = job.BytesSkipped,
        Verify = job.Verify,
        Mismatches = job.Mismatches.Select(CopyMismatchInfo.Of).ToArray(),
    };

    public override string ToString() => $"CopyJob {Id} ({State}, {BytesCopied}/{BytesTotal} bytes)";
}
