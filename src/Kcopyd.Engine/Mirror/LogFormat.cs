using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Kcopyd.Engine.Mirror;

/// <summary>One leg as a persistent log records it: who it is (not its path), how big, and whether it is current.</summary>
public sealed record LogLeg(string StableId, string Name, long SizeBytes, LegHealth Health);

/// <summary>What a persistent log says besides its bitmap: the mirror it belongs to, its legs and the default leg.</summary>
public sealed record LogHeader(Guid MirrorId, ulong Generation, long RegionSizeBytes, long RegionCount, int DefaultLeg, IReadOnlyList<LogLeg> Legs);

/// <summary>
/// The on-disk layout of a mirror log, version 2. The file holds two identical slots; each is a 4 KiB header, the
/// clean bitmap (bit r of byte r/8) and a SHA-256 of both. A flush writes slot A, syncs, then slot B, syncs: a torn
/// write spoils at most one slot and the other holds the state before or after it, both safe (the I/O a flush
/// covers is issued only after the flush). A slot whose hash or fields do not check is never used.
/// </summary>
internal static class LogFormat
{
    public const int Version = 2;
    public const int HeaderBytes = 4096;
    public const int MaxIdBytes = 255;
    public const int MaxNameBytes = 160;
    private const int HashBytes = 32;
    private const int FixedBytes = 72;
    public static readonly byte[] Magic = "KCPYDLG2"u8.ToArray();
    /// <summary>Version 1 logs (no checksum, legs by name) are refused: their bits cannot be trusted.</summary>
    public static readonly byte[] OldMagic = "KCPYDLOG"u8.ToArray();

    public static int BitmapBytes(long regionCount) => RegionBitmaps.ByteCount(regionCount);

    public static long SlotBytes(long regionCount) => (HeaderBytes + BitmapBytes(regionCount) + HashBytes + 4095L) / 4096 * 4096;

    public static byte[] Encode(LogHeader header, ReadOnlySpan<byte> clean)
    {
        var slot = new byte[SlotBytes(header.RegionCount)];
        var s = slot.AsSpan();
        Magic.CopyTo(s);
        BinaryPrimitives.WriteInt32LittleEndian(s[8..], Version);
        BinaryPrimitives.WriteInt64LittleEndian(s[16..], slot.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(s[24..], header.Generation);
        header.MirrorId.TryWriteBytes(s[32..48]);
        BinaryPrimitives.WriteInt64LittleEndian(s[48..], header.RegionSizeBytes);
        BinaryPrimitives.WriteInt64LittleEndian(s[56..], header.RegionCount);
        BinaryPrimitives.WriteInt32LittleEndian(s[64..], header.Legs.Count);
        BinaryPrimitives.WriteInt32LittleEndian(s[68..], header.DefaultLeg);
        int at = FixedBytes;
        foreach (var leg in header.Legs)
        {
            s[at++] = (byte)leg.Health;
            BinaryPrimitives.WriteInt64LittleEndian(s[at..], leg.SizeBytes);
            at += 8;
            at = WriteString(s, at, leg.StableId, MaxIdBytes);
            at = WriteString(s, at, leg.Name, MaxNameBytes);
        }
        int bitmap = BitmapBytes(header.RegionCount);
        clean[..bitmap].CopyTo(s[HeaderBytes..]);
        SHA256.HashData(s[..(HeaderBytes + bitmap)], s.Slice(HeaderBytes + bitmap, HashBytes));
        return slot;
    }

    /// <summary>Reads one slot; null with <paramref name="why"/> when anything in it does not check.</summary>
    public static (LogHeader Header, byte[] Clean)? TryDecode(ReadOnlySpan<byte> slot, out string why)
    {
        why = "";
        if (slot.Length < HeaderBytes + HashBytes) return Fail("it is cut short", out why);
        if (!slot[..8].SequenceEqual(Magic)) return Fail("its magic is wrong", out why);
        int version = BinaryPrimitives.ReadInt32LittleEndian(slot[8..]);
        if (version != Version) return Fail($"it has version {version}, not {Version}", out why);
        long slotBytes = BinaryPrimitives.ReadInt64LittleEndian(slot[16..]);
        long regionSize = BinaryPrimitives.ReadInt64LittleEndian(slot[48..]);
        long regionCount = BinaryPrimitives.ReadInt64LittleEndian(slot[56..]);
        if (regionCount < 1 || regionCount > (1L << 34) || slotBytes != SlotBytes(regionCount) || slotBytes > slot.Length)
            return Fail("its region count and size disagree", out why);
        int bitmap = BitmapBytes(regionCount);
        Span<byte> hash = stackalloc byte[HashBytes];
        SHA256.HashData(slot[..(HeaderBytes + bitmap)], hash);
        if (!hash.SequenceEqual(slot.Slice(HeaderBytes + bitmap, HashBytes))) return Fail("its checksum does not match", out why);

        // The hash matched: what follows was written by us, but is still checked as if it were not.
        int legCount = BinaryPrimitives.ReadInt32LittleEndian(slot[64..]);
        int defaultLeg = BinaryPrimitives.ReadInt32LittleEndian(slot[68..]);
        if (regionSize <= 0 || (regionSize & (regionSize - 1)) != 0) return Fail("its region size is not a power of two", out why);
        if (legCount is < 2 or > MirrorDevice.MaxLegs || defaultLeg < 0 || defaultLeg >= legCount) return Fail("its leg count or default leg is out of range", out why);
        var legs = new LogLeg[legCount];
        int at = FixedBytes;
        for (int i = 0; i < legCount; i++)
        {
            if (at + 9 > HeaderBytes) return Fail("its legs overrun the header", out why);
            byte health = slot[at++];
            long size = BinaryPrimitives.ReadInt64LittleEndian(slot[at..]);
            at += 8;
            if (health > (byte)LegHealth.Stale || size <= 0) return Fail($"leg {i + 1} is malformed", out why);
            if (!TryReadString(slot, ref at, MaxIdBytes, out string id) || id.Length == 0 || !TryReadString(slot, ref at, MaxNameBytes, out string name))
                return Fail($"leg {i + 1} is malformed", out why);
            legs[i] = new LogLeg(id, name, size, (LegHealth)health);
        }
        int spareBits = (int)(bitmap * 8L - regionCount);
        if (spareBits > 0 && (slot[HeaderBytes + bitmap - 1] >> (8 - spareBits)) != 0) return Fail("its bitmap has bits past the last region", out why);
        var header = new LogHeader(new Guid(slot[32..48]), BinaryPrimitives.ReadUInt64LittleEndian(slot[24..]), regionSize, regionCount, defaultLeg, legs);
        return (header, slot.Slice(HeaderBytes, bitmap).ToArray());
    }

    /// <summary>Reads both slots of a file's bytes and returns the newest that checks; null when neither does.</summary>
    public static (LogHeader Header, byte[] Clean)? TryDecodeFile(ReadOnlySpan<byte> file, out string why) => TryDecodeFile(file, out why, out _);

    /// <summary><paramref name="slotsAgree"/> is false when one slot is spoilt or older than the other.</summary>
    public static (LogHeader Header, byte[] Clean)? TryDecodeFile(ReadOnlySpan<byte> file, out string why, out bool slotsAgree)
    {
        slotsAgree = false;
        var first = TryDecode(file, out why);
        long slotBytes = first?.Header is { } h ? SlotBytes(h.RegionCount) : SlotFile.GuessSlotBytes(file, HeaderBytes);
        (LogHeader, byte[])? second = null;
        string whySecond = "it is cut short";
        if (slotBytes > 0 && slotBytes <= file.Length / 2) second = TryDecode(file[(int)slotBytes..], out whySecond);
        if (first == null && second == null)
        {
            why = $"slot A: {why}; slot B: {whySecond}";
            return null;
        }
        if (first == null) return second;
        if (second == null) return first;
        slotsAgree = second.Value.Item1.Generation == first.Value.Header.Generation;
        return second.Value.Item1.Generation > first.Value.Header.Generation ? second : first;
    }

    private static int WriteString(Span<byte> s, int at, string value, int maxBytes)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        int length = Math.Min(bytes.Length, maxBytes);
        BinaryPrimitives.WriteUInt16LittleEndian(s[at..], (ushort)length);
        bytes.AsSpan(0, length).CopyTo(s[(at + 2)..]);
        return at + 2 + length;
    }

    private static bool TryReadString(ReadOnlySpan<byte> s, ref int at, int maxBytes, out string value)
    {
        value = "";
        if (at + 2 > HeaderBytes) return false;
        int length = BinaryPrimitives.ReadUInt16LittleEndian(s[at..]);
        if (length > maxBytes || at + 2 + length > HeaderBytes) return false;
        value = Encoding.UTF8.GetString(s.Slice(at + 2, length));
        at += 2 + length;
        return true;
    }

    private static (LogHeader, byte[])? Fail(string reason, out string why)
    {
        why = reason;
        return null;
    }
}
