namespace Kcopyd.Protocol;

/// <summary>
/// A block-based checksum of a region, shaped like Get-FileHash's output: nbdcopy --blkhash's construction
/// (the digest of the block digests and the length), so equal regions have equal hashes on any host.
/// </summary>
public sealed class RegionHashInfo
{
    public string Algorithm { get; set; } = "";
    /// <summary>Upper-case hex, as Get-FileHash writes it.</summary>
    public string Hash { get; set; } = "";
    public string Path { get; set; } = "";
    public long Offset { get; set; }
    public long Length { get; set; }
    public int BlockSize { get; set; }

    public override string ToString() => Hash;
}
