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
        _recovering = new byte[bytes];
        if (allInSync)
        {
            for (long r = 0; r < regionCount; r++) Set(_sync, r);
            Array.Copy(_sync, Clean, bytes);
            SyncCount = regionCount;
        }
    }

    public object Lock { get; } = new();

    public long RegionCount { get; }

    public long SyncCount { get; private set; }

    /// <summary>The clean bits, laid out as a persistent log stores them (bit r of byte r/8).</summary>
    public byte[] Clean { get; }

    /// <summary>Set when a clean bit changed since the last persist.</summary>
    public bool CleanChanged { get; set; }

    public static int ByteCount(long regionCount) => checked((int)((regionCount + 7) / 8));

    /// <summary>Takes the clean bits read from disk as the sync state: what was not clean at the crash is resynced.</summary>
    public void LoadClean(ReadOnlySpan<byte> clean)
    {
        clean.CopyTo(Clean);
        long count = 0;
        for (long r = 0; r < RegionCount; r++)
        {
            if (Test(Clean, r)) { Set(_sync, r); count++; }
            else Clear(_sync, r);
        }
        SyncCount = count;
    }

    public bool InSync(long region) => Test(_sync, region);

    public void MarkRegion(long region)
    {
        if (!Test(Clean, region)) return;
        Clear(Clean, region);
        CleanChanged = true;
    }

    public void ClearRegion(long region)
    {
        if (Test(Clean, region)) return;
        Set(Clean, region);
        CleanChanged = true;
    }

    public void SetRegionSync(long region, bool inSync)
    {
        Clear(_recovering, region);
        if (inSync == Test(_sync, region)) return;
        if (inSync) { Set(_sync, region); SyncCount++; }
        else { Clear(_sync, region); SyncCount--; }
    }

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
