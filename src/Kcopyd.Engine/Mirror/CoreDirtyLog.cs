namespace Kcopyd.Engine.Mirror;

/// <summary>
/// The in-memory dirty log (dm-log's "core"): nothing survives the mirror, so a new mirror resyncs everything
/// from its first leg unless it is created with NoSync.
/// </summary>
public sealed class CoreDirtyLog : IDirtyLog
{
    private readonly RegionBitmaps _bits;

    public CoreDirtyLog(long regionSizeBytes, long regionCount, bool noSync)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(regionSizeBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(regionCount, 1);
        RegionSizeBytes = regionSizeBytes;
        RegionCount = regionCount;
        _bits = new RegionBitmaps(regionCount, allInSync: noSync);
    }

    public string Kind => "core";

    public string? Path => null;

    public long RegionSizeBytes { get; }

    public long RegionCount { get; }

    public long SyncCount { get { lock (_bits.Lock) return _bits.SyncCount; } }

    public IReadOnlyList<LogLeg>? RecordedLegs => null;

    public int RecordedDefaultLeg => 0;

    public bool ClearsPending => false;

    public bool InSync(long region) { lock (_bits.Lock) return _bits.InSync(region); }

    public void MarkRegion(long region) { lock (_bits.Lock) _bits.MarkRegion(region); }

    public void ClearRegion(long region) { lock (_bits.Lock) _bits.ClearRegion(region); }

    public void SetRegionSync(long region, bool inSync) { lock (_bits.Lock) _bits.SetRegionSync(region, inSync); }

    public void SetAllOutOfSync() { lock (_bits.Lock) _bits.SetAllOutOfSync(); }

    public bool TryGetResyncWork(out long region) { lock (_bits.Lock) return _bits.TryGetResyncWork(out region); }

    public void RestartResync() { lock (_bits.Lock) _bits.RestartResync(); }

    public void RecordLegs(IReadOnlyList<LogLeg> legs, int defaultLeg) { }

    public void Flush(bool includeClears) { }

    public void Dispose() { }
}
