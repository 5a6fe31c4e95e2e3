namespace Kcopyd.Engine.Nbd;

/// <summary>
/// What the handshake learnt of an export: its size, transmission flags and block sizes. Without HasBlockSizes
/// (no NBD_INFO_BLOCK_SIZE from the server) the three sizes are the protocol's defaults.
/// </summary>
internal sealed record NbdClientExport(
    long SizeBytes,
    ushort Flags,
    bool HasBlockSizes,
    uint MinimumBlockSize,
    uint PreferredBlockSize,
    uint MaximumBlockSize)
{
    /// <summary>The payload a client may send or ask for when the server gives no maximum (doc/proto.md, "Block size constraints").</summary>
    public const uint DefaultMaximumPayload = 32 * 1024 * 1024;

    /// <summary>The largest minimum block size the protocol allows.</summary>
    public const uint LargestMinimumBlockSize = 64 * 1024;

    public bool Has(ushort flag) => (Flags & flag) != 0;
}
