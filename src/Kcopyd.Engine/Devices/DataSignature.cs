using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Devices;

/// <summary>
/// Recognises what a device already holds (a filesystem, a partition table, a RAID or LVM member, swap, a Kcopyd
/// log) from the magic numbers near its start, so a leg about to be overwritten by a resync can be questioned
/// first, as mdadm asks about a device that "appears to contain" a filesystem.
/// </summary>
public static unsafe class DataSignature
{
    // Covers every signature below: btrfs, the farthest, ends at 64 KiB + 72 bytes.
    private const int HeadBytes = 68 * 1024;
    private const int TailBytes = 4096;
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(60);

    private const uint MdMagic = 0xa92b4efc;
    // Not a u8 literal: "\xba" there would be the UTF-8 of U+00BA, two bytes.
    private static readonly byte[] LuksMagic = [(byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xBA, 0xBE];

    /// <summary>
    /// Reads the start of <paramref name="device"/> (and the 4 KiB where an MD 1.0 superblock would be, near its
    /// end) and names the first signature found, as a phrase that reads after "appears to contain"
    /// ("an ext4 filesystem", "an MBR partition table"); null when none is found. Proves nothing about blank
    /// devices: a signature may be wiped while its data is not.
    /// </summary>
    public static string? Probe(IBlockDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        int blockSize = Math.Max(1, device.LogicalBlockSize);
        long headLength = Math.Min(RoundUp(HeadBytes, blockSize), device.SizeBytes / blockSize * blockSize);
        if (headLength <= 0) return null;
        byte[] head = Read(device, 0, (int)headLength);
        string? found = FromHead(head);
        if (found != null) return found;

        // MD 1.0 keeps its superblock 8 KiB before the end, rounded down to 4 KiB.
        long tailOffset = (device.SizeBytes - 8192) & ~4095L;
        if (tailOffset < headLength || tailOffset % blockSize != 0) return null;
        byte[] tail = Read(device, tailOffset, RoundUp(TailBytes, blockSize));
        return IsMd(tail, 0, out string version, expectedMinor: 0) ? $"an MD RAID member (superblock {version})" : null;
    }

    /// <summary>The checks on the first bytes of a device, most specific first: a FAT boot sector also ends in 0x55AA.</summary>
    internal static string? FromHead(ReadOnlySpan<byte> head)
    {
        if (At(head, 0, "KCPYDLOG"u8) || At(head, 0, "KCPYDLG2"u8)) return "a Kcopyd mirror log";
        if (At(head, 0, LuksMagic)) return "a LUKS encrypted volume";
        if (At(head, 0, "XFSB"u8)) return "an XFS filesystem";
        if (IsMd(head, 0, out string md, expectedMinor: 1) || IsMd(head, 4096, out md, expectedMinor: 2))
            return $"an MD RAID member (superblock {md})";
        if (At(head, 512, "EFI PART"u8) || At(head, 4096, "EFI PART"u8)) return "a GPT partition table";
        for (int sector = 0; sector < 4; sector++)
            if (At(head, sector * 512, "LABELONE"u8) && At(head, sector * 512 + 24, "LVM2 001"u8)) return "an LVM2 physical volume";
        if (Ext(head) is { } ext) return $"an {ext} filesystem";
        if (At(head, 65600, "_BHRfS_M"u8)) return "a btrfs filesystem";
        // The swap signature ends the first page, whatever the page size of the machine that wrote it.
        foreach (int pageBytes in new[] { 4096, 8192, 16384, 65536 })
            if (At(head, pageBytes - 10, "SWAPSPACE2"u8) || At(head, pageBytes - 10, "SWAP-SPACE"u8)) return "swap space";
        if (At(head, 32769, "CD001"u8)) return "an ISO 9660 filesystem";
        if (At(head, 3, "NTFS    "u8)) return "an NTFS filesystem";
        if (At(head, 3, "EXFAT   "u8)) return "an exFAT filesystem";
        if (BootSectorEnd(head) && (At(head, 54, "FAT"u8) || At(head, 82, "FAT32"u8))) return "a vfat filesystem";
        if (IsMbr(head)) return "an MBR partition table";
        return null;
    }

    private static bool At(ReadOnlySpan<byte> data, int offset, ReadOnlySpan<byte> magic)
        => offset + magic.Length <= data.Length && data.Slice(offset, magic.Length).SequenceEqual(magic);

    private static bool BootSectorEnd(ReadOnlySpan<byte> head) => head.Length >= 512 && head[510] == 0x55 && head[511] == 0xAA;

    /// <summary>ext2, ext3 or ext4 by the superblock's feature flags, as blkid tells them apart.</summary>
    private static string? Ext(ReadOnlySpan<byte> head)
    {
        const int sb = 1024;
        if (head.Length < sb + 0x68 || BinaryPrimitives.ReadUInt16LittleEndian(head[(sb + 0x38)..]) != 0xEF53) return null;
        uint compat = BinaryPrimitives.ReadUInt32LittleEndian(head[(sb + 0x5C)..]);
        uint incompat = BinaryPrimitives.ReadUInt32LittleEndian(head[(sb + 0x60)..]);
        uint roCompat = BinaryPrimitives.ReadUInt32LittleEndian(head[(sb + 0x64)..]);
        const uint ext3Incompat = 0x2 | 0x4 | 0x8 | 0x10;  // filetype, recover, journal_dev, meta_bg
        const uint ext3RoCompat = 0x1 | 0x2 | 0x4;        // sparse_super, large_file, btree_dir
        if ((incompat & ~ext3Incompat) != 0 || (roCompat & ~ext3RoCompat) != 0) return "ext4";
        return (compat & 0x4) != 0 ? "ext3" : "ext2"; // has_journal
    }

    private static bool IsMd(ReadOnlySpan<byte> data, int offset, out string version, int expectedMinor)
    {
        version = $"1.{expectedMinor}";
        return data.Length >= offset + 8
               && BinaryPrimitives.ReadUInt32LittleEndian(data[offset..]) == MdMagic
               && BinaryPrimitives.ReadUInt32LittleEndian(data[(offset + 4)..]) == 1; // major_version
    }

    /// <summary>A boot signature and a partition table that looks like one: boot flags 0 or 0x80, at least one entry used.</summary>
    private static bool IsMbr(ReadOnlySpan<byte> head)
    {
        if (!BootSectorEnd(head)) return false;
        bool any = false;
        for (int i = 0; i < 4; i++)
        {
            var entry = head.Slice(446 + 16 * i, 16);
            if (entry[0] is not (0x00 or 0x80)) return false;
            any |= entry[4] != 0 && BinaryPrimitives.ReadUInt32LittleEndian(entry[12..]) != 0; // type, sector count
        }
        return any;
    }

    private static int RoundUp(int bytes, int blockSize) => (bytes + blockSize - 1) / blockSize * blockSize;

    /// <summary>One read through the device's own Submit, on a queue of its own, waited for with a bound.</summary>
    private static byte[] Read(IBlockDevice device, long offsetBytes, int lengthBytes)
    {
        var buffer = NativeMemory.AlignedAlloc((nuint)lengthBytes, (nuint)Math.Max(4096, device.LogicalBlockSize));
        var vector = (IoVec*)NativeMemory.Alloc((nuint)sizeof(IoVec));
        vector->Base = (nint)buffer;
        vector->Length = lengthBytes;
        var done = new ReadDone();
        bool inFlight = false;
        var queue = new BlockingIoQueue("signature-probe", 1);
        try
        {
            device.Submit(new BlockRequest(BlockOperation.Read, offsetBytes, lengthBytes, new IoBuffers((nint)vector, 1), done, 0), queue);
            inFlight = !done.Event.Wait(ReadTimeout);
            if (inFlight)
                throw new KcopydException("DeviceTimeout", KcopydErrorKind.DeviceError,
                    $"Reading {lengthBytes} bytes at {offsetBytes} of '{device.Name}' took longer than {ReadTimeout.TotalSeconds:0} s.", device.Name);
            if (done.Error != 0)
                throw new KcopydException("DeviceReadFailed", KcopydErrorKind.DeviceError,
                    $"Cannot read {lengthBytes} bytes at {offsetBytes} of '{device.Name}': {Errno.Describe(done.Error)}.", device.Name);
            return new ReadOnlySpan<byte>(buffer, lengthBytes).ToArray();
        }
        finally
        {
            // A read that never ended may still land in the buffer and holds the queue's thread: both are left to it.
            if (!inFlight)
            {
                queue.Dispose();
                NativeMemory.Free(vector);
                NativeMemory.AlignedFree(buffer);
            }
        }
    }

    private sealed class ReadDone : IBlockCompletion
    {
        public ManualResetEventSlim Event { get; } = new();

        public int Error { get; private set; }

        public void Completed(int tag, int error)
        {
            Error = error;
            Event.Set();
        }
    }
}
