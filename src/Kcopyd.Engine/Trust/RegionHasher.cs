namespace Kcopyd.Engine.Trust;

/// <summary>
/// A block-based checksum of a region, nbdcopy --blkhash's construction: the region is cut into blocks of
/// BlockSize bytes (the last one may be shorter), each block is hashed, and the result is
/// H(H(block 1) || H(block 2) || ... || H(block n) || length as 64-bit little-endian). A full block of zeros is not
/// hashed: the digest of a zero block is computed once, so holes and zeroed areas cost only the read and a scan.
/// The defaults (SHA-256, 64 KiB) are meant to be nbdcopy's, so two hosts, or this host and an nbdcopy that has
/// --blkhash, can compare regions by their hashes without moving the data.
/// </summary>
public static class RegionHasher
{
    public const int DefaultBlockSizeBytes = 64 * 1024;
    public const int MinBlockSizeBytes = 512;
    public const int MaxBlockSizeBytes = 32 << 20;

    public static byte[] Hash(RegionInput input, long lengthBytes, int blockSizeBytes = DefaultBlockSizeBytes,
        BlockHashAlgorithm algorithm = BlockHashAlgorithm.SHA256, CancellationToken cancellation = default, Action<long>? progress = null)
    {
        if (blockSizeBytes < MinBlockSizeBytes || blockSizeBytes > MaxBlockSizeBytes || (blockSizeBytes & (blockSizeBytes - 1)) != 0)
            throw new KcopydException("InvalidBlockSize", KcopydErrorKind.InvalidArgument,
                $"The block size must be a power of two from {MinBlockSizeBytes} to {MaxBlockSizeBytes} bytes, not {blockSizeBytes}.", blockSizeBytes);
        RegionInput[] inputs = [input];
        RegionChecks.Check(inputs, lengthBytes);

        int digestLength = BlockDigest.LengthOf(algorithm);
        byte[] zeroDigest = new byte[digestLength];
        BlockDigest.Hash(algorithm, new byte[blockSizeBytes], zeroDigest);
        // Chunks hold whole blocks, so no block is ever cut between two reads.
        int chunkSizeBytes = Math.Max(blockSizeBytes, RegionReader.DefaultChunkSizeBytes / blockSizeBytes * blockSizeBytes);
        byte[] digests = new byte[chunkSizeBytes / blockSizeBytes * digestLength];

        using var running = new BlockDigest.Running(algorithm);
        using var reader = new RegionReader(inputs, lengthBytes, chunkSizeBytes, "hash");
        reader.Read((offset, length, buffers) =>
        {
            nint chunk = buffers[0];
            int blocks = (length + blockSizeBytes - 1) / blockSizeBytes;
            // Block digests are independent: the cores share them, and the running digest takes them in order.
            Parallel.For(0, blocks, new ParallelOptions { CancellationToken = cancellation }, b => HashBlock(chunk, length, b));
            running.Append(digests.AsSpan(0, blocks * digestLength));
            progress?.Invoke(offset + length);
        }, cancellation);
        Span<byte> size = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(size, lengthBytes);
        running.Append(size);
        return running.Finish();

        unsafe void HashBlock(nint chunk, int length, int b)
        {
            int at = b * blockSizeBytes;
            var block = new ReadOnlySpan<byte>((byte*)chunk + at, Math.Min(blockSizeBytes, length - at));
            var digest = digests.AsSpan(b * digestLength, digestLength);
            if (block.Length == blockSizeBytes && block.IndexOfAnyExcept((byte)0) < 0) zeroDigest.CopyTo(digest);
            else BlockDigest.Hash(algorithm, block, digest);
        }
    }
}
