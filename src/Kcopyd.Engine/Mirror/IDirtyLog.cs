namespace Kcopyd.Engine.Mirror;

/// <summary>
/// A mirror's dirty-region log (dm-dirty-log): which regions are in sync, which are marked dirty on disk, and
/// which the recovery should copy next; a persistent log also records the legs, their health and the default leg.
/// Safe to call from any thread.
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

    /// <summary>The legs as the log last recorded them, in the mirror's order; null when it never did (a core or new log).</summary>
    IReadOnlyList<LogLeg>? RecordedLegs { get; }

    /// <summary>The recorded default leg: the one that holds every acknowledged write.</summary>
    int RecordedDefaultLeg { get; }

    /// <summary>Region clears wait for <see cref="Flush(bool)"/> with clears (after the legs were flushed).</summary>
    bool ClearsPending { get; }

    /// <summary>True when every leg holds the region's data.</summary>
    bool InSync(long region);

    /// <summary>Records that writes to an in-sync region are about to be issued; <see cref="Flush(bool)"/> makes it durable.</summary>
    void MarkRegion(long region);

    /// <summary>Records that the region's writes are done; made durable lazily, by a flush with clears.</summary>
    void ClearRegion(long region);

    /// <summary>Sets whether the region is in sync; ends its recovery.</summary>
    void SetRegionSync(long region, bool inSync);

    /// <summary>Every region out of sync, and the recovery starts over.</summary>
    void SetAllOutOfSync();

    /// <summary>The next out-of-sync region to recover, once per region and pass; false when the pass is over.</summary>
    bool TryGetResyncWork(out long region);

    /// <summary>Begins a new recovery pass from the first region.</summary>
    void RestartResync();

    /// <summary>Records the legs' health and the default leg; durable at the next flush.</summary>
    void RecordLegs(IReadOnlyList<LogLeg> legs, int defaultLeg);

    /// <summary>
    /// Makes the marks and leg records so far durable, and with <paramref name="includeClears"/> the clears too
    /// (only once the legs are flushed: a clean bit on disk promises the region's data is on every leg's media).
    /// Writes covered by a mark are issued only after this. Throws IOException when the log cannot be written.
    /// </summary>
    void Flush(bool includeClears);
}
