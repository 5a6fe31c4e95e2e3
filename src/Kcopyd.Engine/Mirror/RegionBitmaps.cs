namespace Kcopyd.Engine.Mirror;

/// <summary>
/// The bitmaps behind every dirty log (dm-log's core): in sync, clean, and under recovery, one bit per region,
/// plus the recovery's search position. The clean bits are what a persistent log stores: a region that was not
/// clean at a crash is taken as out of sync at the next start. Callers hold <see cref="Lock"/>.
/// </summary>
internal sealed class RegionBitmaps
{
    private readonly byte[] _sync;
    private readonly byte[] _recovering;
    private long _searchFrom;

    public RegionBitmaps(long regionCount, bool allInSync)
    {
        RegionCount = regionCount;
        int bytes = ByteCount(regionCount);
        _sync = new byte[bytes];
        Clean = new byte[bytes];
        OnDisk = new byte[bytes];
        _recovering = new byte[bytes];
        if (allInSync)
        {
            for (long r = 0; r < regionCount; r++) Set(_sync, r);
            Array.Copy(_sync, Clean, bytes);
            SyncCount = regionCount;
        }
        ClearsPending = allInSync;
    }

    public object Lock { get; } = new();

    public long RegionCount { get; }

    public long SyncCount { get; private set; }

    /// <summary>The clean bits, laid out as a persistent log stores them (bit r of byte r/8).</summary>
    public byte[] Clean { get; }

    /// <summary>The clean bits as the file holds them now.</summary>
    private byte[] OnDisk { get; }

    /// <summary>A region clean on disk was marked: its writes wait until this reaches the file.</summary>
    public bool MarksPending { get; private set; }

    /// <summary>A region dirty on disk is clean now: written lazily, and only after the legs are flushed.</summary>
    public bool ClearsPending { get; private set; }

    public static int ByteCount(long regionCount) => checked((int)((regionCount + 7) / 8));

    /// <summary>Takes the clean bits read from disk as the sync state: what was not clean at the crash is resynced.</summary>
    public void LoadClean(ReadOnlySpan<byte> clean)
    {
        clean.CopyTo(Clean);
        clean.CopyTo(OnDisk);
        long count = 0;
        for (long r = 0; r < RegionCount; r++)
        {
            if (Test(Clean, r)) { Set(_sync, r); count++; }
            else Clear(_sync, r);
        }
        SyncCount = count;
        MarksPending = ClearsPending = false;
    }

    /// <summary>
    /// The bits to write: with <paramref name="includeClears"/> all of them; without, only the marks (a region
    /// clean here but dirty on disk stays dirty there, since its data may not have reached the legs' media yet).
    /// </summary>
    public byte[] Snapshot(bool includeClears)
    {
        var bits = (byte[])Clean.Clone();
        if (!includeClears)
            for (int i = 0; i < bits.Length; i++) bits[i] &= OnDisk[i];
        return bits;
    }

    /// <summary>The file now holds <paramref name="written"/>, a snapshot taken under the lock.</summary>
    public void Persisted(byte[] written, bool includeClears)
    {
        written.CopyTo(OnDisk, 0);
        MarksPending = false;
        if (includeClears)
        {
            // A clear made after the snapshot is still pending.
            ClearsPending = !Clean.AsSpan().SequenceEqual(OnDisk);
        }
    }

    public bool InSync(long region) => Test(_sync, region);

    public void MarkRegion(long region)
    {
        if (!Test(Clean, region)) return;
        Clear(Clean, region);
        if (Test(OnDisk, region)) MarksPending = true;
    }

    public void ClearRegion(long region)
    {
        if (Test(Clean, region)) return;
        Set(Clean, region);
        ClearsPending = true;
    }

    public void SetRegionSync(long region, bool inSync)
    {
        Clear(_recovering, region);
        if (inSync == Test(_sync, region)) return;
        if (inSync) { Set(_sync, region); SyncCount++; }
        else
        {
            Clear(_sync, region);
            SyncCount--;
            MarkRegion(region);
        }
    }

    /// <summary>Every region out of sync (a leg with nothing on it joined): the next recovery copies them all.</summary>
    public void SetAllOutOfSync()
    {
        for (long r = 0; r < RegionCount; r++)
        {
            if (Test(_sync, r)) { Clear(_sync, r); SyncCount--; }
            MarkRegion(r);
        }
        _searchFrom = 0;
    }

    /// <summary>Starts another recovery pass from the first region (after a failed copy, or when a leg came back).</summary>
    public void RestartResync() => _searchFrom = 0;

    public bool TryGetResyncWork(out long region)
    {
        while (_searchFrom < RegionCount)
        {
            region = _searchFrom++;
            if (!Test(_sync, region) && !Test(_recovering, region))
            {
                Set(_recovering, region);
                return true;
            }
        }
        region = -1;
        return false;
    }

    private static bool Test(byte[] bits, long i) => (bits[i >> 3] & (1 << (int)(i & 7))) != 0;

    private static void Set(byte[] bits, long i) => bits[i >> 3] |= (byte)(1 << (int)(i & 7));

    private static void Clear(byte[] bits, long i) => bits[i >> 3] &= (byte)~(1 << (int)(i & 7));
}
