using Kcopyd.Engine.Mirror;

namespace Kcopyd.Protocol;

/// <summary>
/// A region where a mirror's legs differ from the default leg (Test-MirrorDevice), named as Compare-Region names a
/// range: Offset and Length in bytes, Legs the legs that differ there; Repaired when -Repair rewrote them.
/// </summary>
public sealed class RegionMismatchInfo
{
    public string Mirror { get; set; } = "";
    public long Region { get; set; }
    public long Offset { get; set; }
    public long Length { get; set; }
    public string[] Legs { get; set; } = [];
    public bool Repaired { get; set; }

    public static RegionMismatchInfo Of(RegionMismatch m) => new()
    {
        Mirror = m.Mirror,
        Region = m.Region,
        Offset = m.OffsetBytes,
        Length = m.LengthBytes,
        Legs = m.Legs,
        Repaired = m.Repaired,
    };

    public override string ToString() => $"{Mirror} region {Region} ({string.Join(", ", Legs)})";
}
