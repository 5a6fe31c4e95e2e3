using System.IO.Hashing;
using System.Security.Cryptography;

namespace Kcopyd.Engine.Trust;

/// <summary>The digests Get-RegionHash offers: Get-FileHash's names, and XxHash128 for a fast non-cryptographic check.</summary>
public enum BlockHashAlgorithm
{
    SHA256,
    SHA1,
    SHA384,
    SHA512,
    MD5,
    XxHash128,
}

/// <summary>One algorithm's two uses: a block's digest in one call (thread-safe), and the running digest of the digests.</summary>
internal static class BlockDigest
{
    public static int LengthOf(BlockHashAlgorithm algorithm) => algorithm switch
    {
        BlockHashAlgorithm.SHA256 => SHA256.HashSizeInBytes,
        BlockHashAlgorithm.SHA1 => SHA1.HashSizeInBytes,
        BlockHashAlgorithm.SHA384 => SHA384.HashSizeInBytes,
        BlockHashAlgorithm.SHA512 => SHA512.HashSizeInBytes,
        BlockHashAlgorithm.MD5 => MD5.HashSizeInBytes,
        BlockHashAlgorithm.XxHash128 => 16,
        _ => throw new ArgumentOutOfRangeException(nameof(algorithm), algorithm, null),
    };

    public static void Hash(BlockHashAlgorithm algorithm, ReadOnlySpan<byte> data, Span<byte> digest)
    {
        switch (algorithm)
        {
            case BlockHashAlgorithm.SHA256: SHA256.HashData(data, digest); break;
            case BlockHashAlgorithm.SHA1: SHA1.HashData(data, digest); break;
            case BlockHashAlgorithm.SHA384: SHA384.HashData(data, digest); break;
            case BlockHashAlgorithm.SHA512: SHA512.HashData(data, digest); break;
            case BlockHashAlgorithm.MD5: MD5.HashData(data, digest); break;
            case BlockHashAlgorithm.XxHash128: XxHash128.Hash(data, digest); break;
            default: throw new ArgumentOutOfRangeException(nameof(algorithm), algorithm, null);
        }
    }

    /// <summary>The running digest over the block digests.</summary>
    public sealed class Running : IDisposable
    {
        private readonly IncrementalHash? _crypto;
        private readonly XxHash128? _xx;

        public Running(BlockHashAlgorithm algorithm)
        {
            if (algorithm == BlockHashAlgorithm.XxHash128) _xx = new XxHash128();
            else _crypto = IncrementalHash.CreateHash(new HashAlgorithmName(algorithm.ToString()));
        }

        public void Append(ReadOnlySpan<byte> data)
        {
            if (_xx != null) _xx.Append(data);
            else _crypto!.AppendData(data);
        }

        public byte[] Finish() => _xx != null ? _xx.GetCurrentHash() : _crypto!.GetHashAndReset();

        public void Dispose() => _crypto?.Dispose();
    }
}
