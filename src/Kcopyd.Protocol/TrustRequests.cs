namespace Kcopyd.Protocol;

/// <summary>Compare-Region's request: one call compares up to a bounded number of differing ranges; the cmdlet goes on from where it stopped.</summary>
public sealed class CompareRequest
{
    public DeviceRef[] Paths { get; set; } = [];
    /// <summary>One offset for every input, or one each.</summary>
    public long[] Offsets { get; set; } = [0];
    /// <summary>Null: as far as every input reaches after its offset.</summary>
    public long? Length { get; set; }
    /// <summary>Stop at the first differing block (-Quiet): the answer is whether there is one.</summary>
    public bool FirstOnly { get; set; }
    /// <summary>Bytes compared by earlier calls of the same Compare-Region, and its whole length: for the progress bar only.</summary>
    public long DoneBefore { get; set; }
    public long TotalLength { get; set; }
}

/// <summary>What one CompareRegion call found.</summary>
public sealed class CompareResult
{
    public RegionDifferenceInfo[] Differences { get; set; } = [];
    /// <summary>Bytes of the region this call settled, from its start: all of Length unless Complete is false.</summary>
    public long ComparedBytes { get; set; }
    /// <summary>The region's length this call compared (the default length, when none was given).</summary>
    public long Length { get; set; }
    /// <summary>False when the call stopped at its bound of ranges: the next call starts ComparedBytes further on.</summary>
    public bool Complete { get; set; }
}

/// <summary>Get-RegionHash's request.</summary>
public sealed class HashRequest
{
    public DeviceRef Path { get; set; } = new();
    public long Offset { get; set; }
    /// <summary>Null: the rest of the device after Offset.</summary>
    public long? Length { get; set; }
    public int BlockSize { get; set; } = Kcopyd.Engine.Trust.RegionHasher.DefaultBlockSizeBytes;
    public Kcopyd.Engine.Trust.BlockHashAlgorithm Algorithm { get; set; }
}
