namespace Kcopyd.Protocol;

/// <summary>
/// A range where inputs of Compare-Region differ from the first input: whole logical blocks, so Offset and Length
/// can be handed to Start-RegionCopy as they are. Offset is on the first input; RegionOffset is from the region's start.
/// </summary>
public sealed class RegionDifferenceInfo
{
    public long Offset { get; set; }
    public long Length { get; set; }
    /// <summary>The inputs (as they were named) whose bytes differ from the first input's here.</summary>
    public string[] Inputs { get; set; } = [];
    public long RegionOffset { get; set; }

    public override string ToString() => $"{Offset}+{Length} ({string.Join(", ", Inputs)})";
}
