using System.Buffers.Binary;
using System.Net.Security;
using System.Net.Sockets;
using Kcopyd.Engine.Memory;
using Kcopyd.Engine.Native;
using static Kcopyd.Engine.Nbd.NbdProtocol;

namespace Kcopyd.Engine.Nbd;

/// <summary>The connection's two threads: requests out, replies in, and the bytes between the socket and the caller's iovecs.</summary>
internal sealed unsafe partial class NbdClientConnection
{
    private void SendLoop()
    {
        var header = new byte[RequestHeaderLength];
        while (true)
        {
            NbdClientPiece piece;
            lock (_lock)
            {
                while (_toSend.Count == 0 && !_broken) Monitor.Wait(_lock);
                if (_broken) return;
                piece = _toSend.Dequeue();
            }
            string? failure = null;
            try
            {
                WriteRequestHeader(header, 0, piece.Command, piece.Cookie, piece.Offset, piece.Length);
                SendAll(header);
                if (piece.Command == CmdWrite) SendPayload(piece);
            }
            catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
            {
                failure = $"sending to the server failed: {ex.Message}";
            }
            if (failure != null) Break(failure);
            piece.End(failure == null ? 0 : Errno.EIO);
            if (failure != null) return;
            if (piece.Command == CmdDisconnect)
            {
                TryCloseTls();
                TryShutdown(SocketShutdown.Send);
                return;
            }
        }
    }

    private void ReceiveLoop()
    {
        var header = new byte[SimpleReplyHeaderLength];
        string reason;
        try
        {
            reason = ReceiveReplies(header);
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
        {
            reason = $"receiving from the server failed: {ex.Message}";
        }
        Break(reason);
    }

    /// <summary>Reads replies until the stream ends or goes wrong; returns why.</summary>
    private string ReceiveReplies(byte[] header)
    {
        while (true)
        {
            if (!ReceiveAll(header)) return "the server closed the connection.";
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(header);
            if (magic == StructuredReplyMagic) return "the server sent a structured reply, which was not negotiated.";
            if (magic != SimpleReplyMagic) return $"the server sent a reply with the wrong magic 0x{magic:x8}.";
            uint error = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
            ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
            NbdClientPiece? piece;
            lock (_lock) _pending.Remove(cookie, out piece);
            if (piece == null) return $"the server answered cookie {cookie}, which no request in flight has.";
            ReleaseSlot(piece);

            // A failed read's simple reply carries no data (doc/proto.md, NBD_CMD_READ); a good one carries all of it.
            if (piece.Command == CmdRead && error == 0)
            {
                bool received = false;
                try
                {
                    received = ReceivePayload(piece);
                }
                finally
                {
                    if (!received) piece.End(Errno.EIO);
                }
                if (!received) return "the server closed the connection in the middle of a read's data.";
            }
            if (error == ErrShutdown)
            {
                // The server is going away: the protocol asks for a soft disconnect, and nothing new is sent.
                Disconnect();
            }
            int errno = FromWireError(error);
            piece.End(errno == (int)ErrShutdown ? Errno.EIO : errno);
        }
    }

    private void SendPayload(NbdClientPiece piece)
    {
        long left = piece.Length;
        if (piece.ZeroPayload)
        {
            while (left > 0)
            {
                int chunk = (int)Math.Min(left, ZeroBuffer.LengthBytes);
                SendAll(new ReadOnlySpan<byte>((void*)ZeroBuffer.Address, chunk));
                left -= chunk;
            }
            return;
        }
        ForEachSlice(piece, (slice, n) =>
        {
            SendAll(new ReadOnlySpan<byte>((byte*)slice, n));
            return true;
        });
    }

    /// <summary>Reads a read's data into the owner's buffers; false if the stream ended first.</summary>
    private bool ReceivePayload(NbdClientPiece piece)
        => ForEachSlice(piece, (slice, n) => ReceiveAll(new Span<byte>((byte*)slice, n)));

    /// <summary>
    /// Walks the piece's part of its request's iovecs (it may start inside one and end inside another), calling
    /// <paramref name="slice"/> with each contiguous stretch; stops, and answers false, at the first false.
    /// </summary>
    private static bool ForEachSlice(NbdClientPiece piece, Func<nint, int, bool> slice)
    {
        var vectors = (IoVec*)piece.Owner!.Buffers.Vectors;
        int count = piece.Owner.Buffers.Count;
        long left = piece.Length;
        long skip = piece.BufferOffset;
        for (int i = 0; i < count && left > 0; i++)
        {
            long length = vectors[i].Length;
            if (skip >= length)
            {
                skip -= length;
                continue;
            }
            int n = (int)Math.Min(length - skip, left);
            if (!slice((nint)((byte*)vectors[i].Base + skip), n)) return false;
            left -= n;
            skip = 0;
        }
        return true;
    }

    /// <summary>All of <paramref name="data"/>: a stream's write is whole or throws.</summary>
    private void SendAll(ReadOnlySpan<byte> data) => _stream.Write(data);

    /// <summary>Fills <paramref name="data"/>; false if the stream ended first.</summary>
    private bool ReceiveAll(Span<byte> data)
    {
        while (data.Length > 0)
        {
            int n = _stream.Read(data);
            if (n == 0) return false;
            data = data[n..];
        }
        return true;
    }

    /// <summary>TLS's close_notify after NBD_CMD_DISC, as the protocol asks, so the server sees a clean end of the session.</summary>
    private void TryCloseTls()
    {
        if (_stream is not SslStream tls) return;
        try
        {
            tls.ShutdownAsync().Wait(CloseGrace);
        }
        catch (Exception ex) when (ex is AggregateException or IOException or SocketException or ObjectDisposedException)
        {
            // The server hung up first: the receiver sees the end either way.
        }
    }

    private void TryShutdown(SocketShutdown how)
    {
        try
        {
            _socket.Shutdown(how);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // The receiver will see the end either way.
        }
    }
}
