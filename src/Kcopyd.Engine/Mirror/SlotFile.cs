using System.Buffers.Binary;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// What the two-slot files (a mirror's dirty-region log, a copy's map) share: each slot records its own size at
/// byte 16 of its 4 KiB header, so slot B can be found when slot A is spoilt.
/// </summary>
internal static class SlotFile
{
    /// <summary>Where slot B starts when slot A is spoilt: from slot A's own (unchecked) size field, if it is sane.</summary>
    public static long GuessSlotBytes(ReadOnlySpan<byte> file, int headerBytes)
    {
        if (file.Length < 64) return 0;
        long slotBytes = BinaryPrimitives.ReadInt64LittleEndian(file[16..]);
        return slotBytes >= headerBytes + 4096 && slotBytes % 4096 == 0 ? slotBytes : file.Length / 2 / 4096 * 4096;
    }
}
