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
    /// <summary>A job the host runs for itself (a mirror's recovery copy, a negative Id): listed by Get-CopyJob -IncludeInternal.</summary>
    public bool Internal { get; set; }

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
        Internal = job.Internal,
    };

    public override string ToString() => $"CopyJob {Id} ({State}, {BytesCopied}/{BytesTotal} bytes)";
}
