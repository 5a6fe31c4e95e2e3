using System.Security.Cryptography;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Trust;

namespace Kcopyd.Engine.Tests;

/// <summary>Get-RegionHash's engine: nbdcopy's block hash construction, with zero blocks hashed for free.</summary>
public sealed class RegionHashTests : IDisposable
{
    private const long MiB = 1 << 20;
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void The_hash_is_the_digest_of_the_block_digests_and_the_length()
    {
        string image = _scratch.Image("a.img", 4 * MiB);
        Scratch.FillRandom(image, 0, 3 * MiB, seed: 11); // the last MiB stays a hole
        long length = 4 * MiB - 4096;                     // a last block of 60 KiB
        Assert.Equal(Reference(Scratch.Read(image, 0, length), 65536), Hash(image, 0, length));
    }

    [Fact]
    public void A_hole_and_written_zeros_hash_alike_and_one_byte_changes_the_hash()
    {
        string hole = _scratch.Image("hole.img", 8 * MiB);
        string zeros = _scratch.Loop("zeros.img", 8 * MiB);
        using (var stream = new FileStream(zeros, FileMode.Open, FileAccess.Write))
        {
            stream.Write(new byte[8 * MiB]);
            stream.Flush(true);
        }
        string expected = Reference(new byte[8 * MiB], 65536);
        Assert.Equal(expected, Hash(hole, 0, 8 * MiB));
        Assert.Equal(expected, Hash(zeros, 0, 8 * MiB));

        using (var stream = new FileStream(zeros, FileMode.Open, FileAccess.Write))
        {
            stream.Position = 5 * MiB + 7;
            stream.WriteByte(1);
            stream.Flush(true);
        }
        Assert.NotEqual(expected, Hash(zeros, 0, 8 * MiB));
    }

    [Fact]
    public void Equal_regions_at_other_offsets_hash_alike_in_every_algorithm_and_block_size()
    {
        string a = _scratch.Image("a.img", 8 * MiB), b = _scratch.Image("b.img", 8 * MiB);
        Scratch.FillRandom(a, 2 * MiB, 4 * MiB, seed: 12);
        Scratch.FillRandom(b, 0, 4 * MiB, seed: 12);
        foreach (var algorithm in Enum.GetValues<BlockHashAlgorithm>())
            foreach (int blockSize in new[] { 4096, 65536, 4 << 20 })
                Assert.Equal(Hash(a, 2 * MiB, 4 * MiB, blockSize, algorithm), Hash(b, 0, 4 * MiB, blockSize, algorithm));
        Assert.NotEqual(Hash(a, 2 * MiB, 4 * MiB, 4096), Hash(a, 2 * MiB, 4 * MiB, 65536)); // the block size is part of the hash
    }

    [Fact]
    public void A_block_size_that_is_no_power_of_two_is_refused()
    {
        string a = _scratch.Image("a.img", MiB);
        Assert.Equal("InvalidBlockSize", Assert.Throws<KcopydException>(() => Hash(a, 0, MiB, 3000)).ErrorId);
        Assert.Equal("RegionOutOfRange", Assert.Throws<KcopydException>(() => Hash(a, 4096, MiB)).ErrorId);
    }

    private static string Hash(string path, long offset, long length, int blockSize = 65536, BlockHashAlgorithm algorithm = BlockHashAlgorithm.SHA256)
    {
        using var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadOnly);
        return Convert.ToHexString(RegionHasher.Hash(new RegionInput(device, offset), length, blockSize, algorithm));
    }

    /// <summary>nbdcopy's construction written out plainly: SHA-256 of every block's SHA-256, then the length (64-bit little-endian).</summary>
    private static string Reference(byte[] data, int blockSize)
    {
        using var all = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (int at = 0; at < data.Length; at += blockSize)
            all.AppendData(SHA256.HashData(data.AsSpan(at, Math.Min(blockSize, data.Length - at))));
        all.AppendData(BitConverter.GetBytes((long)data.Length));
        return Convert.ToHexString(all.GetHashAndReset());
    }
}
