using System.IO.Hashing;

namespace Kcopyd.Engine.Trust;

/// <summary>
/// Compares one region of two or more inputs (qemu-img compare, cmp): every chunk is hashed on every input
/// (XxHash128); only where a hash differs from the first input's are the bytes compared, block by block, to find
/// exactly which logical blocks differ and on which inputs. Adjacent blocks where the same inputs differ are merged
/// into one range, and ranges are handed out as they close, in order, so a region with a huge number of
/// differences costs no memory beyond the open range.
/// </summary>
public static class RegionComparer
{
    /// <summary>A mask of 64 bits names the inputs; the cmdlets take fewer.</summary>
    public const int MaxInputs = 64;

    /// <summary>
    /// Hands each differing range to <paramref name="found"/> in order; it returns false to stop there (cmp -s
    /// stops at the first; with <paramref name="firstOnly"/> that first range is handed out as soon as its first block
    /// is seen, unmerged, so a region that differs everywhere is not read to its end). Returns the bytes of the region compared: all of it, or up to the end of the last range
    /// handed out when stopped, so a caller can go on from there.
    /// </summary>
    public static long Compare(IReadOnlyList<RegionInput> inputs, long lengthBytes, Func<RegionDifference, bool> found,
        CancellationToken cancellation = default, Action<long>? progress = null, bool firstOnly = false,
        int chunkSizeBytes = RegionReader.DefaultChunkSizeBytes)
    {
        if (inputs.Count < 2 || inputs.Count > MaxInputs)
            throw new KcopydException("InputCount", KcopydErrorKind.InvalidArgument, $"A compare takes 2 to {MaxInputs} inputs, not {inputs.Count}.", inputs.Count);
        RegionChecks.Check(inputs, lengthBytes);
        int blockSize = RegionChecks.BlockSizeOf(inputs);
        // Smaller chunks for many inputs, so four chunks stay in flight within the reader's budget.
        long fitting = Math.Clamp(RegionReader.MemoryBudgetBytes / (4L * inputs.Count), 64 * 1024, chunkSizeBytes);
        int unit = Math.Max(blockSize, Memory.PagePool.Alignment); // both powers of two
        chunkSizeBytes = (int)Math.Max(fitting / unit, 1) * unit;

        var merger = new Merger(found, firstOnly);
        using var reader = new RegionReader(inputs, lengthBytes, chunkSizeBytes);
        long read = reader.Read((offset, length, buffers) =>
        {
            CompareChunk(offset, length, buffers, blockSize, merger);
            progress?.Invoke(offset + length);
        }, cancellation, () => merger.Stopped);
        if (merger.Stopped) return merger.StoppedAtBytes;
        merger.Close();
        return merger.Stopped ? merger.StoppedAtBytes : read;
    }

    private static unsafe void CompareChunk(long offset, int length, ReadOnlySpan<nint> buffers, int blockSize, Merger merger)
    {
        var first = new ReadOnlySpan<byte>((void*)buffers[0], length);
        UInt128 firstHash = XxHash128.HashToUInt128(first);
        ulong chunkMask = 0;
        for (int i = 1; i < buffers.Length; i++)
            if (XxHash128.HashToUInt128(new ReadOnlySpan<byte>((void*)buffers[i], length)) != firstHash) chunkMask |= 1UL << i;
        if (chunkMask == 0)
        {
            merger.Same();
            return;
        }
        // Equal hashes are taken as equal bytes (a chance of 2^-128); where they differ, the bytes say exactly where.
        for (int at = 0; at < length && !merger.Stopped; at += blockSize)
        {
            ulong mask = 0;
            var block = first.Slice(at, blockSize);
            for (int i = 1; i < buffers.Length; i++)
                if ((chunkMask & (1UL << i)) != 0 && !block.SequenceEqual(new ReadOnlySpan<byte>((byte*)buffers[i] + at, blockSize))) mask |= 1UL << i;
            if (mask == 0) merger.Same();
            else merger.Differs(offset + at, blockSize, mask);
        }
    }

    /// <summary>The one range still open: it grows while the same inputs differ in the next block, and is handed out when that ends.</summary>
    private sealed class Merger(Func<RegionDifference, bool> found, bool firstOnly)
    {
        private RegionDifference? _open;

        public bool Stopped { get; private set; }

        public long StoppedAtBytes { get; private set; }

        public void Differs(long offsetBytes, long lengthBytes, ulong mask)
        {
            if (_open is { } open && open.EndBytes == offsetBytes && open.InputMask == mask)
            {
                _open = open with { LengthBytes = open.LengthBytes + lengthBytes };
                return;
            }
            Close();
            if (Stopped) return;
            _open = new RegionDifference(offsetBytes, lengthBytes, mask);
            if (firstOnly) Close();
        }

        public void Same() => Close();

        public void Close()
        {
            if (_open is not { } open || Stopped) return;
            _open = null;
            if (!found(open))
            {
                Stopped = true;
                StoppedAtBytes = open.EndBytes;
            }
        }
    }
}
