namespace Kcopyd.Engine.Trust;

/// <summary>
/// A range where some inputs differ from the first: offsets relative to the start of the region, whole logical
/// blocks, and a mask of the inputs (bit i for input i, never bit 0) that differ there.
/// </summary>
public readonly record struct RegionDifference(long OffsetBytes, long LengthBytes, ulong InputMask)
{
    public long EndBytes => OffsetBytes + LengthBytes;

    /// <summary>The indexes of the inputs that differ from the first here.</summary>
    public IEnumerable<int> Inputs()
    {
        for (int i = 1; i < 64; i++)
            if ((InputMask & (1UL << i)) != 0) yield return i;
    }
}
