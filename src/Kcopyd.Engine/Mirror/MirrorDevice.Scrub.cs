using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Mirror;

/// <summary>A region whose alive legs do not hold the same bytes.</summary>
public sealed record RegionMismatch(string Mirror, long Region, long OffsetBytes, long LengthBytes, string[] Legs, bool Repaired)
{
    /// <summary>The legs that differ from the default leg.</summary>
    public override string ToString() => $"region {Region} ({OffsetBytes}+{LengthBytes}): {string.Join(", ", Legs)} differ{(Repaired ? ", rewritten" : "")}";
}

/// <summary>
/// Scrub (md's check and repair): each in-sync region is held as a recovery holds it (writes wait, those in flight
/// drain), read from every alive leg and compared with the default leg; with repair the default's bytes are
/// written over the legs that differ. Out-of-sync regions are skipped: the recovery copies them anyway.
/// </summary>
public sealed partial class MirrorDevice
{
    private const int ScrubChunkBytes = 1 << 20;
    private static readonly TimeSpan ScrubIoTimeout = TimeSpan.FromSeconds(60);
    private readonly Dictionary<long, TaskCompletionSource> _scrubbing = new();

    /// <summary>Compares every in-sync region's legs; <paramref name="progress"/> hears of each region done.</summary>
    public IReadOnlyList<RegionMismatch> Scrub(bool repair, Action<long>? progress = null, CancellationToken cancellationToken = default)
    {
        var mismatches = new List<RegionMismatch>();
        WithMaintenance(() =>
        {
            for (long region = 0; region < RegionCount; region++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var found = ScrubRegion(region, repair, cancellationToken);
                if (found != null) mismatches.Add(found);
                progress?.Invoke(region);
            }
        });
        return mismatches;
    }

    private RegionMismatch? ScrubRegion(long region, bool repair, CancellationToken cancellationToken)
    {
        var quiesced = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_scrubbing) _scrubbing[region] = quiesced;
        if (!_regions.TryBeginScrub(region))
        {
            lock (_scrubbing) _scrubbing.Remove(region);
            return null;
        }
        Wake();
        bool compared = false;
        ulong differ = 0;
        try
        {
            if (!quiesced.Task.Wait(ScrubIoTimeout, cancellationToken))
                throw new KcopydException("MirrorBusy", KcopydErrorKind.ResourceBusy, $"Writes to region {region} of mirror '{Name}' did not drain in time.", Name);
            differ = CompareRegion(region, repair, cancellationToken);
            compared = true;
        }
        finally
        {
            bool handed;
            lock (_scrubbing)
            {
                _scrubbing.Remove(region);
                handed = quiesced.Task.IsCompleted;
            }
            // The region was in sync and stays so: a mismatch found without repair is reported, not resynced.
            // One never handed over (writes did not drain in time) goes to the recovery when it quiesces.
            if (handed)
            {
                _regions.RecoveryCopied(region, success: true);
                Wake();
            }
        }
        if (!compared || differ == 0) return null;
        long offset = region * RegionSizeBytes;
        return new RegionMismatch(Name, region, offset, Math.Min(RegionSizeBytes, SizeBytes - offset), LegsIn(differ).Select(l => l.Name).ToArray(), repair);
    }

    /// <summary>The legs that differ from the default, chunk by chunk; with repair they get the default's bytes.</summary>
    private ulong CompareRegion(long region, bool repair, CancellationToken cancellationToken)
    {
        var source = DefaultLeg;
        var others = _legs.Where(l => l.IsAlive && l != source).ToArray();
        long start = region * RegionSizeBytes, end = Math.Min(start + RegionSizeBytes, SizeBytes);
        int chunk = (int)Math.Min(ScrubChunkBytes, RegionSizeBytes);
        using var expected = new LegBuffer(chunk);
        using var actual = new LegBuffer(chunk);
        ulong differ = 0;
        for (long offset = start; offset < end; offset += chunk)
        {
            int length = (int)Math.Min(chunk, end - offset);
            ReadOrThrow(source, expected, offset, length, cancellationToken);
            foreach (var leg in others)
            {
                ReadOrThrow(leg, actual, offset, length, cancellationToken);
                if (actual.Span[..length].SequenceEqual(expected.Span[..length])) continue;
                differ |= leg.Bit;
                if (!repair) continue;
                int errno = expected.Transfer(leg.Device, Client.Queue, BlockOperation.Write, offset, length, ScrubIoTimeout, cancellationToken);
                if (errno != 0) FailLeg(leg, $"a scrub rewrite of region {region}", errno);
            }
        }
        return differ;
    }

    private void ReadOrThrow(MirrorLeg leg, LegBuffer buffer, long offset, int length, CancellationToken cancellationToken)
    {
        int errno = buffer.Transfer(leg.Device, Client.Queue, BlockOperation.Read, offset, length, ScrubIoTimeout, cancellationToken);
        if (errno == 0) return;
        leg.CountReadError();
        throw new KcopydException("ScrubReadFailed", KcopydErrorKind.DeviceError,
            $"Reading leg '{leg.Name}' of mirror '{Name}' at {offset} failed: {Errno.Describe(errno)}.", leg.Name);
    }

    /// <summary>
    /// Compares 64 KiB samples spread over the legs (for a mirror created with NoSync, which trusts them to be the
    /// same): the first offset where a leg differs from the default one, or null when every sample matched.
    /// </summary>
    public long? FindSampledDifference(int samples = 64)
    {
        const int sampleBytes = 64 * 1024;
        int length = (int)Math.Min(sampleBytes, SizeBytes);
        using var expected = new LegBuffer(length);
        using var actual = new LegBuffer(length);
        for (int i = 0; i < samples; i++)
        {
            long offset = (SizeBytes - length) / Math.Max(1, samples - 1) * i / LogicalBlockSize * LogicalBlockSize;
            var found = FirstDifference(DefaultLeg, _legs.Where(l => l != DefaultLeg && l.TakesWrites), offset, length, expected, actual, out bool unreadable);
            if (unreadable) return null;
            if (found != null) return found.Value.OffsetBytes;
        }
        return null;
    }

    /// <summary>True when the mirror's log was read from an existing file, so its in-sync regions are claims about the legs.</summary>
    public bool LogWasReused => _log is DiskDirtyLog { IsNew: false };

    /// <summary>
    /// Reads the start of up to <paramref name="samples"/> regions the log calls in sync from every alive leg and
    /// compares them with the default leg: in-sync regions are identical on alive legs, so a difference means a leg
    /// is not the storage the log knew (an image file re-created under a reused inode, a leg written outside the
    /// mirror). Returns the first differing leg and byte, or null; a read that fails is not a difference.
    /// </summary>
    public (string Leg, long OffsetBytes)? FindSampledInSyncDifference(int samples = 64)
    {
        const int sampleBytes = 64 * 1024;
        long count = Math.Min(samples, RegionCount);
        using var expected = new LegBuffer(sampleBytes);
        using var actual = new LegBuffer(sampleBytes);
        for (long i = 0; i < count; i++)
        {
            long region = RegionCount * i / count;
            if (!_log.InSync(region)) continue;
            long offset = region * RegionSizeBytes;
            int length = (int)(Math.Min(sampleBytes, SizeBytes - offset) / LogicalBlockSize * LogicalBlockSize);
            if (length <= 0) continue;
            var source = DefaultLeg;
            if (!source.IsAlive) return null;
            var found = FirstDifference(source, _legs.Where(l => l != source && l.IsAlive), offset, length, expected, actual, out _);
            if (found != null) return (found.Value.Leg.Name, found.Value.OffsetBytes);
        }
        return null;
    }

    /// <summary>
    /// Reads <paramref name="length"/> bytes at <paramref name="offset"/> from <paramref name="source"/> and each of
    /// <paramref name="others"/>: the first leg and byte that differ, or null. A leg that cannot be read is no
    /// difference; <paramref name="sourceUnreadable"/> says the source itself could not be.
    /// </summary>
    private (MirrorLeg Leg, long OffsetBytes)? FirstDifference(MirrorLeg source, IEnumerable<MirrorLeg> others, long offset, int length,
        LegBuffer expected, LegBuffer actual, out bool sourceUnreadable)
    {
        sourceUnreadable = expected.Transfer(source.Device, Client.Queue, BlockOperation.Read, offset, length, ScrubIoTimeout) != 0;
        if (sourceUnreadable) return null;
        foreach (var leg in others)
        {
            if (actual.Transfer(leg.Device, Client.Queue, BlockOperation.Read, offset, length, ScrubIoTimeout) != 0) continue;
            int at = actual.Span[..length].CommonPrefixLength(expected.Span[..length]);
            if (at < length) return (leg, offset + at);
        }
        return null;
    }

    /// <summary>The daemon hands a quiesced region to its waiting scrub instead of starting a copy.</summary>
    private bool HandToScrub(long region)
    {
        lock (_scrubbing)
        {
            if (!_scrubbing.TryGetValue(region, out var waiting)) return false;
            waiting.TrySetResult();
            return true;
        }
    }
}
