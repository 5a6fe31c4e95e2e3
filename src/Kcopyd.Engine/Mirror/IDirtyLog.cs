namespace Kcopyd.Engine.Mirror;

/// <summary>
/// A mirror's dirty-region log (dm-dirty-log): which regions are in sync, which are marked dirty on disk, and
/// which the recovery should copy next. Safe to call from any thread.
/// </summary>
public interface IDirtyLog : IDisposable
{
    /// <summary>"core" (in memory) or "disk" (a file).</summary>
    string Kind { get; }

    /// <summary>The log file; null for a core log.</summary>
    string? Path { get; }

    long RegionSizeBytes { get; }

    long RegionCount { get; }

    /// <summary>Regions in sync.</summary>
    long SyncCount { get; }

    /// <summary>True when every leg holds the region's data.</summary>
    bool InSync(long region);

    /// <summary>Records that writes to an in-sync region are about to be issued; <see cref="Flush"/> makes it durable.</summary>
    void MarkRegion(long region);

    /// <summary>Records that the region's writes are done; made durable lazily, by the next <see cref="Flush"/>.</summary>
    void ClearRegion(long region);

    /// <summary>Sets whether the region is in sync; ends its recovery.</summary>
    void SetRegionSync(long region, bool inSync);

    /// <summary>The next out-of-sync region to recover, once per region and pass; false when the pass is over.</summary>
    bool TryGetResyncWork(out long region);

    /// <summary>Makes the marks and clears so far durable. Writes covered by a mark are issued only after this.</summary>
    void Flush();
}
