using System.Buffers.Binary;
using System.Net.Sockets;
using System.Numerics;
using System.Text;
using static Kcopyd.Engine.Nbd.NbdProtocol;

namespace Kcopyd.Engine.Nbd;

/// <summary>
/// The client's side of the fixed newstyle handshake: NBD_OPT_GO asking for the block sizes, NBD_OPT_EXPORT_NAME
/// for a server that does not know NBD_OPT_GO (or is not fixed newstyle). Simple replies only: structured replies
/// are not negotiated, so the transmission phase needs nothing more.
/// </summary>
internal sealed class NbdClientHandshake
{
    /// <summary>The magic an oldstyle server sends second, where a newstyle one sends IHAVEOPT.</summary>
    private const ulong OldstyleMagic = 0x00420281861253;
    private const int ExportNameReplyLength = 8 + 2;
    private const int ExportNameReplyZeroes = 124;
    // Items of NBD_REP_INFO are a few bytes and messages at most 4 KiB: more is not an NBD server talking.
    private const int MaxOptionReplyLength = 64 * 1024;

    private readonly Socket _socket;
    private readonly NbdUri _uri;
    private readonly string _target;
    private readonly NbdClientDeadline _deadline;
    private readonly byte[] _name;

    private NbdClientHandshake(Socket socket, NbdUri uri, string target, NbdClientDeadline deadline)
    {
        _socket = socket;
        _uri = uri;
        _target = target;
        _deadline = deadline;
        _name = Encoding.UTF8.GetBytes(uri.ExportName);
    }

    /// <summary>Negotiates the URI's export on a connected socket; on return the socket is in the transmission phase.</summary>
    public static NbdClientExport Negotiate(Socket socket, NbdUri uri, string target, NbdClientDeadline deadline)
    {
        var handshake = new NbdClientHandshake(socket, uri, target, deadline);
        try
        {
            return handshake.Run();
        }
        catch (TimeoutException)
        {
            throw NbdClientErrors.HandshakeTimeout(target, deadline.Timeout);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            throw NbdClientErrors.HandshakeTimeout(target, deadline.Timeout);
        }
        catch (EndOfStreamException)
        {
            throw NbdClientErrors.HandshakeFailed(target, "the server closed the connection.");
        }
        catch (SocketException ex)
        {
            throw NbdClientErrors.HandshakeFailed(target, ex.Message, ex);
        }
        finally
        {
            // The transmission phase waits as long as the server takes, as a local disk's queue does.
            socket.ReceiveTimeout = 0;
            socket.SendTimeout = 0;
        }
    }

    private NbdClientExport Run()
    {
        Span<byte> greeting = stackalloc byte[8 + 8 + 2];
        Receive(greeting);
        if (BinaryPrimitives.ReadUInt64BigEndian(greeting) != NbdMagic)
            throw Failed("the server is not an NBD server (it did not start with NBDMAGIC).");
        ulong second = BinaryPrimitives.ReadUInt64BigEndian(greeting[8..]);
        if (second == OldstyleMagic) throw Failed("the server speaks the oldstyle handshake, which has no export names and is not supported.");
        if (second != IHaveOpt) throw Failed("the server is not an NBD server (no IHAVEOPT after NBDMAGIC).");
        ushort serverFlags = BinaryPrimitives.ReadUInt16BigEndian(greeting[16..]);
        bool fixedNewstyle = (serverFlags & FlagFixedNewstyle) != 0;
        bool noZeroes = (serverFlags & FlagNoZeroes) != 0;

        Span<byte> clientFlags = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(clientFlags, (fixedNewstyle ? ClientFlagFixedNewstyle : 0) | (noZeroes ? ClientFlagNoZeroes : 0));
        Send(clientFlags);

        // Only a fixed newstyle server answers options other than NBD_OPT_EXPORT_NAME instead of hanging up.
        if (fixedNewstyle && Go() is { } export) return export;
        return ExportName(noZeroes);
    }

    /// <summary>NBD_OPT_GO with NBD_INFO_BLOCK_SIZE; null when the server does not know the option.</summary>
    private NbdClientExport? Go()
    {
        var data = new byte[4 + _name.Length + 2 + 2];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)_name.Length);
        _name.CopyTo(data, 4);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + _name.Length), 1);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + _name.Length + 2), InfoBlockSize);
        SendOption(OptGo, data);

        long? size = null;
        ushort flags = 0;
        (uint Min, uint Preferred, uint Max)? blockSizes = null;
        Span<byte> header = stackalloc byte[8 + 4 + 4 + 4];
        while (true)
        {
            Receive(header);
            if (BinaryPrimitives.ReadUInt64BigEndian(header) != OptionReplyMagic) throw Failed("an option reply has a wrong magic.");
            uint option = BinaryPrimitives.ReadUInt32BigEndian(header[8..]);
            uint type = BinaryPrimitives.ReadUInt32BigEndian(header[12..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header[16..]);
            if (option != OptGo) throw Failed($"the server answered option {option} to NBD_OPT_GO.");
            if (length > MaxOptionReplyLength) throw Failed($"an option reply of {length} bytes is too long.");
            var reply = new byte[length];
            Receive(reply);

            switch (type)
            {
                case RepAck:
                    if (size is not { } bytes) throw Failed("the server ended NBD_OPT_GO without NBD_INFO_EXPORT.");
                    return Export(bytes, flags, blockSizes);
                case RepInfo:
                    ReadInfo(reply, ref size, ref flags, ref blockSizes);
                    break;
                case RepErrUnsup:
                    return null;
                default:
                    // A reply type of a later protocol version is nothing this client asked for.
                    if ((type & RepFlagError) == 0) break;
                    var refusal = Refusal(type, reply);
                    Abort();
                    throw refusal;
            }
        }
    }

    private KcopydException Refusal(uint type, byte[] reply) => type switch
    {
        RepErrTlsReqd => NbdClientErrors.TlsUnsupported(_target,
            $"The NBD server of '{_target}' requires TLS, which Kcopyd's NBD client does not support yet.{Message(reply)}"),
        RepErrUnknown => NbdClientErrors.ExportNotFound(_target, _uri.ExportName, $"the server has no such export.{Message(reply)}"),
        RepErrPolicy => NbdClientErrors.ExportNotFound(_target, _uri.ExportName, $"the server's policy refuses it.{Message(reply)}"),
        RepErrShutdown => NbdClientErrors.ExportNotFound(_target, _uri.ExportName, $"the server is shutting down.{Message(reply)}"),
        _ => NbdClientErrors.ExportNotFound(_target, _uri.ExportName, $"the server refused it (error {type & ~RepFlagError}).{Message(reply)}"),
    };

    /// <summary>NBD_OPT_ABORT, the polite end of a handshake that failed; the server's answer does not matter.</summary>
    private void Abort()
    {
        try
        {
            SendOption(OptAbort, []);
        }
        catch (Exception ex) when (ex is SocketException or TimeoutException or ObjectDisposedException)
        {
            // The server is gone already: the refusal is what the caller needs to hear.
        }
    }

    private void ReadInfo(byte[] reply, ref long? size, ref ushort flags, ref (uint Min, uint Preferred, uint Max)? blockSizes)
    {
        if (reply.Length < 2) throw Failed("an NBD_REP_INFO has no information type.");
        var item = reply.AsSpan(2);
        switch (BinaryPrimitives.ReadUInt16BigEndian(reply))
        {
            case InfoExport:
                if (item.Length != 8 + 2) throw Failed("NBD_INFO_EXPORT has the wrong length.");
                size = Size(BinaryPrimitives.ReadUInt64BigEndian(item));
                flags = BinaryPrimitives.ReadUInt16BigEndian(item[8..]);
                break;
            case InfoBlockSize:
                if (item.Length != 4 + 4 + 4) throw Failed("NBD_INFO_BLOCK_SIZE has the wrong length.");
                blockSizes = (BinaryPrimitives.ReadUInt32BigEndian(item), BinaryPrimitives.ReadUInt32BigEndian(item[4..]),
                    BinaryPrimitives.ReadUInt32BigEndian(item[8..]));
                break;
        }
    }

    /// <summary>NBD_OPT_EXPORT_NAME: the old way in, which cannot fail politely; the server just hangs up.</summary>
    private NbdClientExport ExportName(bool noZeroes)
    {
        SendOption(OptExportName, _name);
        var reply = new byte[ExportNameReplyLength + (noZeroes ? 0 : ExportNameReplyZeroes)];
        try
        {
            Receive(reply);
        }
        catch (EndOfStreamException)
        {
            throw NbdClientErrors.ExportNotFound(_target, _uri.ExportName, "the server closed the connection at NBD_OPT_EXPORT_NAME (it has no such export, or refuses it).");
        }
        long size = Size(BinaryPrimitives.ReadUInt64BigEndian(reply));
        return Export(size, BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8)), null);
    }

    private NbdClientExport Export(long size, ushort flags, (uint Min, uint Preferred, uint Max)? blockSizes)
    {
        // NBD_FLAG_HAS_FLAGS must be set; without it the other bits mean nothing.
        if ((flags & FlagHasFlags) == 0) flags = 0;
        if (blockSizes is not { } sizes)
            return new NbdClientExport(size, flags, false, 1, 4096, NbdClientExport.DefaultMaximumPayload);
        var (min, preferred, max) = sizes;
        if (min == 0 || !BitOperations.IsPow2(min) || min > NbdClientExport.LargestMinimumBlockSize)
            throw Failed($"the minimum block size {min} is not a power of two up to 64 KiB.");
        if (max < min || (max != uint.MaxValue && max % min != 0))
            throw Failed($"the maximum block size {max} is not a multiple of the minimum {min}.");
        // The preferred size only guides; a bad one is not worth refusing the export over.
        if (preferred < min || !BitOperations.IsPow2(preferred)) preferred = min;
        return new NbdClientExport(size, flags, true, min, preferred, max);
    }

    private long Size(ulong size) => size <= long.MaxValue ? (long)size : throw Failed($"the export size {size} is too large.");

    private void SendOption(uint option, ReadOnlySpan<byte> data)
    {
        Span<byte> header = stackalloc byte[8 + 4 + 4];
        BinaryPrimitives.WriteUInt64BigEndian(header, IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(header[8..], option);
        BinaryPrimitives.WriteUInt32BigEndian(header[12..], (uint)data.Length);
        Send(header);
        Send(data);
    }

    private void Send(ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            if (_deadline.Expired) throw new TimeoutException();
            _socket.SendTimeout = _deadline.RemainingMilliseconds;
            data = data[_socket.Send(data)..];
        }
    }

    private void Receive(Span<byte> data)
    {
        while (data.Length > 0)
        {
            if (_deadline.Expired) throw new TimeoutException();
            _socket.ReceiveTimeout = _deadline.RemainingMilliseconds;
            int n = _socket.Receive(data);
            if (n == 0) throw new EndOfStreamException();
            data = data[n..];
        }
    }

    /// <summary>An error reply's text, as a sentence to append; the server's words, so trimmed and bounded.</summary>
    private static string Message(byte[] reply)
    {
        if (reply.Length == 0) return "";
        string text = Encoding.UTF8.GetString(reply, 0, Math.Min(reply.Length, MaxNameLength)).Trim();
        if (text.Length == 0) return "";
        return char.IsPunctuation(text[^1]) ? $" The server said: {text}" : $" The server said: {text}.";
    }

    private KcopydException Failed(string reason) => NbdClientErrors.HandshakeFailed(_target, reason);
}
