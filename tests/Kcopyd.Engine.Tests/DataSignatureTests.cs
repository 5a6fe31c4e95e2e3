using System.Buffers.Binary;
using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Tests;

/// <summary>The signature probe names what real tools leave on a device, and stays quiet on zeros and noise.</summary>
public sealed class DataSignatureTests : IDisposable
{
    private const long MiB = 1 << 20;
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData("ext2")]
    [InlineData("ext3")]
    [InlineData("ext4")]
    public void A_filesystem_made_by_mke2fs_is_named_with_its_ext_version(string type)
    {
        string image = _scratch.Image("fs.img", 8 * MiB);
        Scratch.Run("mke2fs", $"-q -F -t {type} {image}");

        Assert.Equal($"an {type} filesystem", ProbeOf(image));
    }

    [Fact]
    public void Swap_made_by_mkswap_is_named()
    {
        string image = _scratch.Image("swap.img", 8 * MiB);
        Scratch.Run("mkswap", image);

        Assert.Equal("swap space", ProbeOf(image));
    }

    [Fact]
    public void An_mbr_partition_table_is_named()
    {
        string image = _scratch.Image("parted.img", 8 * MiB);
        AttachedLoop.WriteMbr(image, startSector: 2048, sectorCount: 4096);

        Assert.Equal("an MBR partition table", ProbeOf(image));
    }

    [Fact]
    public void A_filesystem_on_a_loop_device_is_found_through_the_block_device()
    {
        string loop = _scratch.Loop("fs.img", 8 * MiB);
        Scratch.Run("mkfs.ext4", $"-q -F {loop}");

        Assert.Equal("an ext4 filesystem", ProbeOf(loop));
    }

    [Fact]
    public void A_zeroed_device_holds_no_signature()
    {
        Assert.Null(ProbeOf(_scratch.Image("zero.img", 8 * MiB)));
    }

    [Fact]
    public void Random_bytes_hold_no_signature()
    {
        string image = _scratch.Image("noise.img", 8 * MiB);
        Scratch.FillRandom(image, 0, 8 * MiB, seed: 31);

        Assert.Null(ProbeOf(image));
    }

    [Fact]
    public void A_device_smaller_than_the_probe_is_read_as_far_as_it_goes()
    {
        string image = _scratch.Image("tiny.img", 4096);
        Patch(image, 0, "XFSB"u8.ToArray());

        Assert.Equal("an XFS filesystem", ProbeOf(image));
    }

    // Magic numbers at the offsets the formats define, for formats whose tools are not installed here.
    [Theory]
    [InlineData("xfs", "an XFS filesystem")]
    [InlineData("btrfs", "a btrfs filesystem")]
    [InlineData("luks", "a LUKS encrypted volume")]
    [InlineData("lvm2", "an LVM2 physical volume")]
    [InlineData("md1.1", "an MD RAID member (superblock 1.1)")]
    [InlineData("md1.2", "an MD RAID member (superblock 1.2)")]
    [InlineData("md1.0", "an MD RAID member (superblock 1.0)")]
    [InlineData("gpt", "a GPT partition table")]
    [InlineData("gpt4k", "a GPT partition table")]
    [InlineData("vfat", "a vfat filesystem")]
    [InlineData("exfat", "an exFAT filesystem")]
    [InlineData("ntfs", "an NTFS filesystem")]
    [InlineData("iso9660", "an ISO 9660 filesystem")]
    [InlineData("old-swap", "swap space")]
    [InlineData("kcopyd-log", "a Kcopyd mirror log")]
    [InlineData("kcopyd-log2", "a Kcopyd mirror log")]
    public void A_signature_at_its_place_is_named(string format, string expected)
    {
        long size = 8 * MiB;
        string image = _scratch.Image(format + ".img", size);
        foreach (var (offset, bytes) in Signature(format, size)) Patch(image, offset, bytes);

        Assert.Equal(expected, ProbeOf(image));
    }

    private static IEnumerable<(long Offset, byte[] Bytes)> Signature(string format, long size)
    {
        byte[] md = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(md, 0xa92b4efc);
        BinaryPrimitives.WriteUInt32LittleEndian(md.AsSpan(4), 1);
        byte[] bootEnd = [0x55, 0xAA];
        return format switch
        {
            "xfs" => [(0, "XFSB"u8.ToArray())],
            "btrfs" => [(65600, "_BHRfS_M"u8.ToArray())],
            "luks" => [(0, [(byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xBA, 0xBE, 0, 2])],
            "lvm2" => [(512, "LABELONE"u8.ToArray()), (536, "LVM2 001"u8.ToArray())],
            "md1.1" => [(0, md)],
            "md1.2" => [(4096, md)],
            "md1.0" => [(((size - 8192) & ~4095L), md)],
            // With its protective MBR (one entry of type 0xEE), which must not make it "an MBR partition table".
            "gpt" => [(512, "EFI PART"u8.ToArray()), (446 + 4, [0xEE]), (446 + 12, [0xFF, 0xFF, 0, 0]), (510, bootEnd)],
            "gpt4k" => [(4096, "EFI PART"u8.ToArray())],
            "vfat" => [(3, "mkfs.fat"u8.ToArray()), (82, "FAT32   "u8.ToArray()), (510, bootEnd)],
            "exfat" => [(3, "EXFAT   "u8.ToArray()), (510, bootEnd)],
            "ntfs" => [(3, "NTFS    "u8.ToArray()), (510, bootEnd)],
            "iso9660" => [(32769, "CD001"u8.ToArray())],
            "old-swap" => [(4086, "SWAP-SPACE"u8.ToArray())],
            "kcopyd-log" => [(0, "KCPYDLOG"u8.ToArray())],
            "kcopyd-log2" => [(0, "KCPYDLG2"u8.ToArray())],
            _ => throw new ArgumentException(format),
        };
    }

    private static void Patch(string path, long offset, byte[] bytes)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        stream.Position = offset;
        stream.Write(bytes);
    }

    private static string? ProbeOf(string path)
    {
        using var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadOnly);
        return DataSignature.Probe(device);
    }
}
