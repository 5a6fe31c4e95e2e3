namespace Kcopyd.Engine.Nbd;

/// <summary>
/// One NBD request on the wire: a whole block request or a piece of one. It ends when both its send and its reply
/// have ended, in either order, so a caller's buffer is never handed back while the sender still reads from it.
/// </summary>
internal sealed class NbdClientPiece
{
    private int _holds;
    private int _error;

    public NbdClientPiece(NbdClientRequest? owner, ushort command, ulong offset, uint length, long bufferOffset, bool zeroPayload)
    {
        Owner = owner;
        Command = command;
        Offset = offset;
        Length = length;
        BufferOffset = bufferOffset;
        ZeroPayload = zeroPayload;
        // NBD_CMD_DISC has no reply: only its send ends it.
        _holds = command == NbdProtocol.CmdDisconnect ? 1 : 2;
    }

    /// <summary>Null for NBD_CMD_DISC, which no caller waits for.</summary>
    public NbdClientRequest? Owner { get; }

    public ushort Command { get; }

    public ulong Offset { get; }

    public uint Length { get; }

    /// <summary>Where this piece's bytes start in the owner's buffers.</summary>
    public long BufferOffset { get; }

    /// <summary>A write whose payload is zeros (WriteZeroes on a server without NBD_CMD_WRITE_ZEROES), not the caller's buffers.</summary>
    public bool ZeroPayload { get; }

    public ulong Cookie { get; set; }

    /// <summary>Took one of the connection's in-flight slots, given back when the piece leaves the pending table.</summary>
    public bool HoldsSlot { get; set; }

    /// <summary>The send or the reply side ended; the second of the two ends the piece.</summary>
    public void End(int error)
    {
        if (error != 0) Interlocked.CompareExchange(ref _error, error, 0);
        if (Interlocked.Decrement(ref _holds) == 0) Owner?.PieceEnded(Volatile.Read(ref _error));
    }
}
