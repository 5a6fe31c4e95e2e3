using Kcopyd.Engine.Copy;

namespace Kcopyd.Protocol;

/// <summary>
/// A range of a destination that did not read back as the source after a copy with -Verify: Offset and Length in
/// the destination's own bytes. Unreadable is true when the re-read failed, so the range could not be checked.
/// </summary>
public sealed class CopyMismatchInfo
{
    public string Destination { get; set; } = "";
    public long Offset { get; set; }
    public long Length { get; set; }
    public bool Unreadable { get; set; }

    public static CopyMismatchInfo Of(CopyMismatch m) => new() { Destination = m.Destination, Offset = m.Offset, Length = m.Length, Unreadable = m.Unreadable };

    public override string ToString() => $"{Destination} {Offset}+{Length}";
}
