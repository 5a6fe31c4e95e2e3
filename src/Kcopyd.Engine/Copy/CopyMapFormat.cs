using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Kcopyd.Engine.Copy;

/// <summary>One device of a copy as its map records it: its stable identity (not its path), its size and the region's offset on it.</summary>
public sealed record CopyMapDevice(string StableId, long SizeBytes, long OffsetBytes);

/// <summary>Which copy a map belongs to: a resumed copy must have exactly these devices, offsets and length.</summary>
public sealed record CopyMapHeader(ulong Generation, long ChunkBytes, long ChunkCount, long LengthBytes, CopyMapDevice Source, IReadOnlyList<CopyMapDevice> Destinations)
{
    /// <summary>The same copy: equal devices in the same order, offsets and length (the generation and chunk size aside).</summary>
    public bool SameCopy(CopyMapHeader other)
        => LengthBytes == other.LengthBytes && Source == other.Source && Destinations.SequenceEqual(other.Destinations);
}

/// <summary>
/// The on-disk layout of a copy map (ddrescue's mapfile, in binary), version 1. The file holds two slots of the same
/// size; each is a 4 KiB header, the finished-chunk bitmap (bit c of byte c/8) and a SHA-256 of both. Generation g is
/// written to slot g % 2 and synced before generation g + 1 is started, so a torn write spoils only the slot being
/// written and the other still holds the state before it: never a chunk whose writes were not flushed.
/// </summary>
internal static class CopyMapFormat
{
    public const int Version = 1;
    public const int HeaderBytes = 4096;
    public const int MaxIdBytes = 255;
    private const int HashBytes = 32;
    private const int FixedBytes = 80;
    public static readonly byte[] Magic = "KCPYDMP1"u8.ToArray();

    public static int BitmapBytes(long chunkCount) => (int)((chunkCount + 7) / 8);

    public static long SlotBytes(long chunkCount) => (HeaderBytes + BitmapBytes(chunkCount) + HashBytes + 4095L) / 4096 * 4096;

    public static byte[] Encode(CopyMapHeader header, ReadOnlySpan<byte> bits)
    {
        var slot = new byte[SlotBytes(header.ChunkCount)];
        var s = slot.AsSpan();
        Magic.CopyTo(s);
        BinaryPrimitives.WriteInt32LittleEndian(s[8..], Version);
        BinaryPrimitives.WriteInt64LittleEndian(s[16..], slot.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(s[24..], header.Generation);
        BinaryPrimitives.WriteInt64LittleEndian(s[32..], header.ChunkBytes);
        BinaryPrimitives.WriteInt64LittleEndian(s[40..], header.ChunkCount);
        BinaryPrimitives.WriteInt64LittleEndian(s[48..], header.LengthBytes);
        BinaryPrimitives.WriteInt32LittleEndian(s[56..], header.Destinations.Count);
        int at = WriteDevice(s, FixedBytes, header.Source);
        foreach (var d in header.Destinations) at = WriteDevice(s, at, d);
        int bitmap = BitmapBytes(header.ChunkCount);
        bits[..bitmap].CopyTo(s[HeaderBytes..]);
        SHA256.HashData(s[..(HeaderBytes + bitmap)], s.Slice(HeaderBytes + bitmap, HashBytes));
        return slot;
    }

    /// <summary>Reads one slot; null with <paramref name="why"/> when anything in it does not check.</summary>
    public static (CopyMapHeader Header, byte[] Bits)? TryDecode(ReadOnlySpan<byte> slot, out string why)
    {
        why = "";
        if (slot.Length < HeaderBytes + HashBytes) return Fail("it is cut short", out why);
        if (!slot[..8].SequenceEqual(Magic)) return Fail("its magic is wrong", out why);
        int version = BinaryPrimitives.ReadInt32LittleEndian(slot[8..]);
        if (version != Version) return Fail($"it has version {version}, not {Version}", out why);
        long slotBytes = BinaryPrimitives.ReadInt64LittleEndian(slot[16..]);
        long chunkBytes = BinaryPrimitives.ReadInt64LittleEndian(slot[32..]);
        long chunkCount = BinaryPrimitives.ReadInt64LittleEndian(slot[40..]);
        long length = BinaryPrimitives.ReadInt64LittleEndian(slot[48..]);
        if (chunkCount < 1 || chunkCount > (1L << 34) || slotBytes != SlotBytes(chunkCount) || slotBytes > slot.Length)
            return Fail("its chunk count and size disagree", out why);
        int bitmap = BitmapBytes(chunkCount);
        Span<byte> hash = stackalloc byte[HashBytes];
        SHA256.HashData(slot[..(HeaderBytes + bitmap)], hash);
        if (!hash.SequenceEqual(slot.Slice(HeaderBytes + bitmap, HashBytes))) return Fail("its checksum does not match", out why);

        // The hash matched: what follows was written by us, but is still checked as if it were not.
        if (chunkBytes <= 0 || length <= 0 || (length + chunkBytes - 1) / chunkBytes != chunkCount) return Fail("its length, chunk size and chunk count disagree", out why);
        int count = BinaryPrimitives.ReadInt32LittleEndian(slot[56..]);
        if (count is < 1 or > CopyRequest.MaxDestinations) return Fail("its destination count is out of range", out why);
        int at = FixedBytes;
        if (!TryReadDevice(slot, ref at, out var source)) return Fail("its source is malformed", out why);
        var destinations = new CopyMapDevice[count];
        for (int i = 0; i < count; i++)
            if (!TryReadDevice(slot, ref at, out destinations[i])) return Fail($"destination {i + 1} is malformed", out why);
        int spareBits = (int)(bitmap * 8L - chunkCount);
        if (spareBits > 0 && (slot[HeaderBytes + bitmap - 1] >> (8 - spareBits)) != 0) return Fail("its bitmap has bits past the last chunk", out why);
        var header = new CopyMapHeader(BinaryPrimitives.ReadUInt64LittleEndian(slot[24..]), chunkBytes, chunkCount, length, source, destinations);
        return (header, slot.Slice(HeaderBytes, bitmap).ToArray());
    }

    /// <summary>Reads both slots of a file's bytes and returns the newer one that checks; null when neither does.</summary>
    public static (CopyMapHeader Header, byte[] Bits)? TryDecodeFile(ReadOnlySpan<byte> file, out string why)
    {
        var first = TryDecode(file, out why);
        long slotBytes = first?.Header is { } h ? SlotBytes(h.ChunkCount) : Mirror.SlotFile.GuessSlotBytes(file, HeaderBytes);
        (CopyMapHeader Header, byte[] Bits)? second = null;
        string whySecond = "it is cut short";
        if (slotBytes > 0 && slotBytes <= file.Length / 2) second = TryDecode(file[(int)slotBytes..], out whySecond);
        if (first == null && second == null)
        {
            why = $"slot A: {why}; slot B: {whySecond}";
            return null;
        }
        if (first == null) return second;
        if (second == null) return first;
        return second.Value.Header.Generation > first.Value.Header.Generation ? second : first;
    }

    private static int WriteDevice(Span<byte> s, int at, CopyMapDevice device)
    {
        BinaryPrimitives.WriteInt64LittleEndian(s[at..], device.SizeBytes);
        BinaryPrimitives.WriteInt64LittleEndian(s[(at + 8)..], device.OffsetBytes);
        byte[] id = Encoding.UTF8.GetBytes(device.StableId);
        if (id.Length > MaxIdBytes) throw new ArgumentException($"A stable id is at most {MaxIdBytes} bytes.", nameof(device));
        BinaryPrimitives.WriteUInt16LittleEndian(s[(at + 16)..], (ushort)id.Length);
        id.CopyTo(s[(at + 18)..]);
        return at + 18 + id.Length;
    }

    private static bool TryReadDevice(ReadOnlySpan<byte> s, ref int at, out CopyMapDevice device)
    {
        device = null!;
        if (at + 18 > HeaderBytes) return false;
        long size = BinaryPrimitives.ReadInt64LittleEndian(s[at..]);
        long offset = BinaryPrimitives.ReadInt64LittleEndian(s[(at + 8)..]);
        int length = BinaryPrimitives.ReadUInt16LittleEndian(s[(at + 16)..]);
        if (size <= 0 || offset < 0 || length == 0 || length > MaxIdBytes || at + 18 + length > HeaderBytes) return false;
        device = new CopyMapDevice(Encoding.UTF8.GetString(s.Slice(at + 18, length)), size, offset);
        at += 18 + length;
        return true;
    }

    private static (CopyMapHeader, byte[])? Fail(string reason, out string why)
    {
        why = reason;
        return null;
    }
}
