namespace Kcopyd.Protocol;

/// <summary>A copy client as Get-CopyClient shows it: its own pool, its throttle and what it is doing now.</summary>
public sealed class CopyClientInfo
{
    public string Name { get; set; } = "";
    /// <summary>Pages in the client's own pool: the most memory its jobs ever hold.</summary>
    public int PageCount { get; set; }
    public int FreePages { get; set; }
    public int PageSize { get; set; }
    /// <summary>Big jobs are split into sub-jobs of this many bytes.</summary>
    public int SubJobSize { get; set; }
    public int SubJobsInFlight { get; set; }
    /// <summary>Jobs queued or running on the client.</summary>
    public int ActiveJobs { get; set; }
    /// <summary>0 for unlimited.</summary>
    public long BytesPerSecond { get; set; }
    /// <summary>The share of time the client may keep I/O in flight; 100 is unlimited.</summary>
    public int DutyCyclePercent { get; set; }
    /// <summary>"io_uring" or "blocking".</summary>
    public string IoBackend { get; set; } = "";

    public override string ToString() => $"CopyClient {Name} ({FreePages}/{PageCount} pages free, {ActiveJobs} jobs)";
}
