using System.Buffers.Binary;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Numerics;
using System.Text;
using static Kcopyd.Engine.Nbd.NbdProtocol;

namespace Kcopyd.Engine.Nbd;

/// <summary>
/// The client's side of the fixed newstyle handshake: NBD_OPT_GO asking for the block sizes, NBD_OPT_EXPORT_NAME
/// for a server that does not know NBD_OPT_GO (or is not fixed newstyle). Simple replies only: structured replies
/// are not negotiated, so the transmission phase needs nothing more. An nbds URI sends NBD_OPT_STARTTLS first and
/// nothing else until TLS is up: a server that will not do TLS learns nothing of the export asked for.
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
    /// <summary>The socket's stream, and once NBD_OPT_STARTTLS succeeded the TLS stream over it.</summary>
    private Stream _stream;
    private readonly NbdUri _uri;
    private readonly string _target;
    private readonly NbdClientDeadline _deadline;
    private readonly byte[] _name;
    private readonly NbdClientTls? _tls;

    private NbdClientHandshake(Socket socket, NbdUri uri, NbdClientTls? tls, string target, NbdClientDeadline deadline)
    {
        _tls = tls;
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        _uri = uri;
        _target = target;
        _deadline = deadline;
        _name = Encoding.UTF8.GetBytes(uri.ExportName);
    }

    /// <summary>
    /// Negotiates the URI's export on a connected socket, with TLS when <paramref name="tls"/> is given; on return the
    /// stream (the socket's, or TLS over it) is in the transmission phase. The caller disposes the stream before the socket.
    /// </summary>
    public static (NbdClientExport Export, Stream Stream) Negotiate(Socket socket, NbdUri uri, NbdClientTls? tls, string target, NbdClientDeadline deadline)
    {
        var handshake = new NbdClientHandshake(socket, uri, tls, target, deadline);
        try
        {
            return (handshake.Run(), handshake._stream);
        }
        catch (Exception ex) when (IsTimeout(ex))
        {
            handshake._stream.Dispose();
            throw NbdClientErrors.HandshakeTimeout(target, deadline.Timeout);
        }
        catch (Exception ex) when (ex is IOException or SocketException && handshake._stream is SslStream)
        {
            // With TLS 1.3 the server checks the client's certificate after the client's side of the handshake is
            // done: its refusal arrives as the end of the stream at the first option over TLS.
            handshake._stream.Dispose();
            throw NbdClientErrors.TlsHandshakeFailed(target,
                $"the server ended the TLS session ({(ex is EndOfStreamException ? "it closed the connection" : ex.Message)}); it may have refused this client's certificate{handshake.ClientCertificateNote}.", ex);
        }
        catch (Exception ex) when (ex is IOException or SocketException)
        {
            handshake._stream.Dispose();
            throw ex is EndOfStreamException
                ? NbdClientErrors.HandshakeFailed(target, "the server closed the connection.")
                : NbdClientErrors.HandshakeFailed(target, ex.Message, ex);
        }
        catch
        {
            handshake._stream.Dispose();
            throw;
        }
        finally
        {
            // The transmission phase waits as long as the server takes, as a local disk's queue does.
            socket.ReceiveTimeout = 0;
            socket.SendTimeout = 0;
        }
    }

    private static bool IsTimeout(Exception ex) => ex switch
    {
        TimeoutException => true,
        SocketException s => s.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock,
        IOException { InnerException: { } inner } => IsTimeout(inner),
        _ => false,
    };

    private string ClientCertificateNote => _tls is { HasClientCertificate: false }
        ? $" (none was given: {NbdTlsCertificates.ClientCertificateFile} and {NbdTlsCertificates.ClientKeyFile} are not in the certificate directory)"
        : "";

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

        if (_tls != null)
        {
            if (!fixedNewstyle) throw NbdClientErrors.TlsNotOffered(_target, "it does not speak fixed newstyle negotiation, which TLS needs.");
            StartTls(_tls);
        }
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
        while (true)
        {
            var (type, reply) = ReceiveOptionReply(OptGo);
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

    /// <summary>NBD_OPT_STARTTLS, then the TLS handshake on the same socket; every later byte goes over TLS.</summary>
    private void StartTls(NbdClientTls credentials)
    {
        SendOption(OptStartTls, []);
        var (type, reply) = ReceiveOptionReply(OptStartTls);
        if (type != RepAck)
        {
            Abort();
            throw NbdClientErrors.TlsNotOffered(_target, type switch
            {
                RepErrUnsup => $"it does not know NBD_OPT_STARTTLS.{Message(reply)}",
                RepErrPolicy => $"its policy refuses TLS.{Message(reply)}",
                _ when (type & RepFlagError) != 0 => $"it refused NBD_OPT_STARTTLS (error {type & ~RepFlagError}).{Message(reply)}",
                _ => $"it answered NBD_OPT_STARTTLS with reply type {type}.",
            });
        }
        string? refusal = null;
        var tls = new SslStream(_stream, leaveInnerStreamOpen: false);
        _stream = tls;
        _socket.ReceiveTimeout = _deadline.RemainingMilliseconds;
        _socket.SendTimeout = _deadline.RemainingMilliseconds;
        try
        {
            tls.AuthenticateAsClient(credentials.ClientOptions(why => refusal = why));
        }
        catch (AuthenticationException ex)
        {
            throw NbdClientErrors.TlsHandshakeFailed(_target, refusal ?? $"{ex.Message}{(ex.InnerException is { } inner ? $" ({inner.Message})" : "")}{ClientCertificateNote}.", ex);
        }
    }

    /// <summary>One option reply to <paramref name="option"/>: its type and data.</summary>
    private (uint Type, byte[] Data) ReceiveOptionReply(uint option)
    {
        Span<byte> header = stackalloc byte[8 + 4 + 4 + 4];
        Receive(header);
        if (BinaryPrimitives.ReadUInt64BigEndian(header) != OptionReplyMagic) throw Failed("an option reply has a wrong magic.");
        uint answered = BinaryPrimitives.ReadUInt32BigEndian(header[8..]);
        uint type = BinaryPrimitives.ReadUInt32BigEndian(header[12..]);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header[16..]);
        if (answered != option) throw Failed($"the server answered option {answered} to option {option}.");
        if (length > MaxOptionReplyLength) throw Failed($"an option reply of {length} bytes is too long.");
        var data = new byte[length];
        Receive(data);
        return (type, data);
    }

    private KcopydException Refusal(uint type, byte[] reply) => type switch
    {
        RepErrTlsReqd => NbdClientErrors.TlsRequired(_target, Message(reply)),
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
        catch (Exception ex) when (ex is SocketException or IOException or TimeoutException or ObjectDisposedException)
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

    /// <summary>All of <paramref name="data"/> (a stream's write is whole or throws), within the deadline.</summary>
    private void Send(ReadOnlySpan<byte> data)
    {
        if (_deadline.Expired) throw new TimeoutException();
        _socket.SendTimeout = _deadline.RemainingMilliseconds;
        _stream.Write(data);
    }

    private void Receive(Span<byte> data)
    {
        while (data.Length > 0)
        {
            if (_deadline.Expired) throw new TimeoutException();
            _socket.ReceiveTimeout = _deadline.RemainingMilliseconds;
            int n = _stream.Read(data);
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
