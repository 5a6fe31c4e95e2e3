using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;
using Tmds.Linux;
using static Kcopyd.Engine.Nbd.NbdProtocol;

namespace Kcopyd.Engine.Nbd;

/// <summary>Requests into NBD commands, split to the server's maximum, and the device's end.</summary>
public sealed unsafe partial class NbdDevice
{
    /// <summary>
    /// Queues the request's NBD command(s) for the connections' senders, pieces taking turns over the connections,
    /// and returns; the replies complete it on the receiver threads. Waits only while a connection has
    /// <see cref="NbdClientOptions.MaxInFlight"/> pieces on the wire.
    /// <paramref name="queue"/> is not used: the device does its own I/O on its socket.
    /// </summary>
    public void Submit(in BlockRequest request, IIoQueue queue)
    {
        int invalid = Check(request);
        if (invalid != 0)
        {
            ObjectDisposedException.ThrowIf((Volatile.Read(ref _state) & DisposedFlag) != 0, this);
            request.Completion.Completed(request.Tag, invalid);
            return;
        }
        // Counted before the disposed check, so Dispose either sees this request or we see Dispose: never neither.
        if ((Interlocked.Increment(ref _state) & DisposedFlag) != 0)
        {
            EndRequest();
            throw new ObjectDisposedException(Name);
        }

        var (command, pieceBytes) = request.Operation switch
        {
            BlockOperation.Read => (CmdRead, _payloadPiece),
            BlockOperation.Write => (CmdWrite, _payloadPiece),
            BlockOperation.WriteZeroes or BlockOperation.PunchZeroes when CanWriteZeroes => (CmdWriteZeroes, _rangePiece),
            BlockOperation.WriteZeroes or BlockOperation.PunchZeroes => (CmdWrite, _payloadPiece), // zeros from the shared zero buffer
            BlockOperation.Discard => (CmdTrim, _rangePiece),
            _ => (CmdFlush, 0u),
        };
        int immediate = request.Operation switch
        {
            BlockOperation.Flush when !CanFlush => 0,
            BlockOperation.Discard when !CanTrim => Errno.EOPNOTSUPP,
            _ => -1,
        };
        if (immediate < 0 && request.LengthBytes == 0 && request.Operation != BlockOperation.Flush) immediate = 0;
        if (immediate >= 0)
        {
            new NbdClientRequest(this, request, 0).PieceEnded(immediate);
            return;
        }

        if (command is CmdRead or CmdWrite && _connections.Length > 1) pieceBytes = SpreadPiece(request.LengthBytes, pieceBytes);
        int pieces = command == CmdFlush ? 1 : (int)((request.LengthBytes + pieceBytes - 1) / pieceBytes);
        var owner = new NbdClientRequest(this, request, pieces);
        bool zeroPayload = request.Operation is BlockOperation.WriteZeroes or BlockOperation.PunchZeroes && command == CmdWrite;
        long done = 0;
        for (int i = 0; i < pieces; i++)
        {
            uint length = command == CmdFlush ? 0 : (uint)Math.Min(pieceBytes, request.LengthBytes - done);
            // A flush goes to the first connection: with CAN_MULTI_CONN it covers the writes the others completed.
            var connection = command == CmdFlush ? _connections[0] : NextConnection();
            connection.Enqueue(new NbdClientPiece(owner, command, (ulong)(request.OffsetBytes + done), length, done, zeroPayload));
            done += length;
        }
        owner.PieceEnded(0); // the issuer's hold
    }

    /// <summary>
    /// Refuses new requests at once, waits (up to <see cref="NbdClientOptions.DisposeTimeout"/>) for those in
    /// flight, then sends NBD_CMD_DISC and closes. Requests still in flight then end with EIO. Called from a
    /// completion (on the receiver thread) it does not wait, since that thread is the one that ends them.
    /// </summary>
    public void Dispose()
    {
        int before = Interlocked.Or(ref _state, DisposedFlag);
        if ((before & DisposedFlag) != 0) return;
        if (before != 0 && !IsOwnThread) _drained.Wait(_options.DisposeTimeout);
        foreach (var connection in _connections) connection.Close();
    }

    /// <summary>On a connection's own thread (a completion), where waiting for the device would wait for oneself.</summary>
    private bool IsOwnThread => Array.Exists(_connections, c => c.IsOwnThread);

    private NbdClientConnection NextConnection()
        => _connections[(int)((uint)Interlocked.Increment(ref _nextConnection) % (uint)_connections.Length)];

    /// <summary>
    /// The piece size that gives each connection a share of a request (a copy's sub-job then travels side by side,
    /// and the server reads it with as many threads), but no share smaller than <see cref="MinSpreadPiece"/>.
    /// </summary>
    private uint SpreadPiece(long lengthBytes, uint pieceBytes)
    {
        uint min = _export.MinimumBlockSize;
        long share = (lengthBytes + _connections.Length - 1) / _connections.Length;
        share = (share + min - 1) / min * min;
        return (uint)Math.Min(pieceBytes, Math.Max(share, MinSpreadPiece / min * min));
    }

    /// <summary>Called once per completed request (by <see cref="NbdClientRequest"/>).</summary>
    internal void EndRequest()
    {
        if (Interlocked.Decrement(ref _state) == DisposedFlag) _drained.Set();
    }

    /// <summary>0 for a request the device can send, else the errno it fails with at once.</summary>
    private int Check(in BlockRequest request)
    {
        var operation = request.Operation;
        // The last line of defence: never ask for a byte past the end, whatever the caller checked.
        if (request.OffsetBytes < 0 || request.LengthBytes < 0 || request.LengthBytes > SizeBytes - request.OffsetBytes)
            return Errno.EINVAL;
        if (operation == BlockOperation.Flush) return 0;
        if (operation != BlockOperation.Read && !CanWrite) return LibC.EROFS;
        // A server may hang up on a request off its minimum block size: refuse it here instead.
        uint min = _export.MinimumBlockSize;
        if ((ulong)request.OffsetBytes % min != 0 || (ulong)request.LengthBytes % min != 0) return Errno.EINVAL;
        if (operation is BlockOperation.Read or BlockOperation.Write && BufferBytes(request.Buffers) < request.LengthBytes) return Errno.EINVAL;
        return 0;
    }

    private static long BufferBytes(IoBuffers buffers)
    {
        var vectors = (IoVec*)buffers.Vectors;
        long total = 0;
        for (int i = 0; i < buffers.Count; i++) total += vectors[i].Length;
        return total;
    }
}
