using System.Buffers.Binary;
using System.Net.Security;
using System.Security.Authentication;
using System.Text;
using static Kcopyd.Engine.Nbd.NbdProtocol;

namespace Kcopyd.Engine.Nbd;

/// <summary>The fixed newstyle handshake: greeting, client flags, then options until the client picks the export.</summary>
internal sealed partial class NbdConnection
{
    private const int OptionHeaderLength = 16;
    private const int OptionReplyHeaderLength = 20;
    private const int ExportNameZeroes = 124;

    // A name that is not UTF-8 names no export: the strict decoder says so instead of guessing characters.
    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private bool _noZeroes;

    /// <summary>Structured replies were negotiated: READ replies are OFFSET_DATA or ERROR chunks.</summary>
    private bool _structured;

    /// <summary>The export requires TLS and the client has not started it yet: every option but STARTTLS and ABORT is refused.</summary>
    private bool TlsPending => Export.Tls != null && _stream is not SslStream;

    /// <summary>True once the client entered the transmission phase; false when it aborted.</summary>
    private async Task<bool> NegotiateAsync()
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_reading.Token);
        timeout.CancelAfter(_server.Options.HandshakeTimeout);
        try
        {
            return await HandshakeAsync(timeout.Token).ConfigureAwait(false);
        }
        // A TLS handshake cut short may say so as an IOException: the timeout is still the reason.
        catch (Exception e) when (e is OperationCanceledException or IOException && timeout.IsCancellationRequested && !_reading.IsCancellationRequested)
        {
            throw new ProtocolViolation($"no export chosen within the handshake timeout ({_server.Options.HandshakeTimeout.TotalSeconds:0.#} s)");
        }
    }

    private async Task<bool> HandshakeAsync(CancellationToken cancellationToken)
    {
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, NbdMagic);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), FlagFixedNewstyle | FlagNoZeroes);
        await SendAsync(greeting, cancellationToken).ConfigureAwait(false);

        var clientFlags = new byte[4];
        await ReceiveAsync(clientFlags, endAllowed: false, "the client flags", cancellationToken).ConfigureAwait(false);
        uint flags = BinaryPrimitives.ReadUInt32BigEndian(clientFlags);
        // The protocol says to drop a client that sets a flag we did not offer.
        if ((flags & ~(ClientFlagFixedNewstyle | ClientFlagNoZeroes)) != 0)
            throw new ProtocolViolation($"unknown client flags 0x{flags:x8}");
        // The protocol allows TLS only after fixed newstyle negotiation: such a client can never meet the requirement.
        if (TlsPending && (flags & ClientFlagFixedNewstyle) == 0)
            throw new ProtocolViolation("a client without fixed newstyle negotiation cannot start the TLS this export requires");
        _noZeroes = (flags & ClientFlagNoZeroes) != 0;

        var header = new byte[OptionHeaderLength];
        while (true)
        {
            await ReceiveAsync(header, endAllowed: false, "an option header", cancellationToken).ConfigureAwait(false);
            ulong magic = BinaryPrimitives.ReadUInt64BigEndian(header);
            uint option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            if (magic != IHaveOpt) throw new ProtocolViolation($"bad option magic 0x{magic:x16}");
            if (length > MaxOptionLength)
            {
                // Its data cannot be skipped safely at any length: say why, then close.
                await TrySendOptionReplyAsync(option, RepErrTooBig, $"Option data over {MaxOptionLength} bytes.", cancellationToken).ConfigureAwait(false);
                throw new ProtocolViolation($"option {option} with {length} bytes of data (at most {MaxOptionLength})");
            }
            var data = new byte[length];
            await ReceiveAsync(data, endAllowed: false, $"the data of option {option}", cancellationToken).ConfigureAwait(false);

            if (TlsPending && option is not (OptStartTls or OptAbort))
            {
                // NBD_OPT_EXPORT_NAME has no error reply: closing is the only answer the protocol leaves.
                if (option == OptExportName) throw new ProtocolViolation("NBD_OPT_EXPORT_NAME without the TLS this export requires");
                await SendOptionReplyAsync(option, RepErrTlsReqd, "This server requires TLS: send NBD_OPT_STARTTLS first.", cancellationToken)
                    .ConfigureAwait(false);
                continue;
            }
            switch (option)
            {
                case OptExportName:
                    if (!TryDecodeName(data, out string exportName) || !Export.Answers(exportName))
                        throw new ProtocolViolation($"NBD_OPT_EXPORT_NAME asked for an unknown export '{exportName}'");
                    await SendExportNameReplyAsync(cancellationToken).ConfigureAwait(false);
                    return true;
                case OptAbort:
                    await TrySendOptionReplyAsync(option, RepAck, "", cancellationToken).ConfigureAwait(false);
                    return false;
                case OptList:
                    await ListAsync(option, length, cancellationToken).ConfigureAwait(false);
                    break;
                case OptStartTls:
                    await StartTlsAsync(option, length, cancellationToken).ConfigureAwait(false);
                    break;
                case OptInfo:
                case OptGo:
                    if (await InfoAsync(option, data, cancellationToken).ConfigureAwait(false) && option == OptGo) return true;
                    break;
                case OptStructuredReply:
                    if (length != 0)
                    {
                        await SendOptionReplyAsync(option, RepErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data.", cancellationToken).ConfigureAwait(false);
                        break;
                    }
                    _structured = true;
                    await SendOptionReplyAsync(option, RepAck, Array.Empty<byte>(), cancellationToken).ConfigureAwait(false);
                    break;
                default:
                    await SendOptionReplyAsync(option, RepErrUnsup, Array.Empty<byte>(), cancellationToken).ConfigureAwait(false);
                    break;
            }
        }
    }

    /// <summary>
    /// NBD_OPT_STARTTLS: the ACK, then the TLS handshake (within the handshake timeout like every other step), then
    /// the options start again over TLS. Nothing negotiated before carries over: in FORCEDTLS mode nothing could be.
    /// </summary>
    private async Task StartTlsAsync(uint option, uint length, CancellationToken cancellationToken)
    {
        if (Export.Tls is not { } credentials)
        {
            await SendOptionReplyAsync(option, length == 0 ? RepErrUnsup : RepErrInvalid, "This server does not offer TLS.", cancellationToken)
                .ConfigureAwait(false);
            return;
        }
        if (!TlsPending || length != 0)
        {
            await SendOptionReplyAsync(option, RepErrInvalid, length != 0 ? "NBD_OPT_STARTTLS takes no data." : "TLS is on already.", cancellationToken)
                .ConfigureAwait(false);
            return;
        }
        await SendOptionReplyAsync(option, RepAck, Array.Empty<byte>(), cancellationToken).ConfigureAwait(false);
        string? refusal = null;
        var tls = new SslStream(_stream, leaveInnerStreamOpen: false);
        _stream = tls;
        try
        {
            await tls.AuthenticateAsServerAsync(credentials.ServerOptions(why => refusal = why), cancellationToken).ConfigureAwait(false);
        }
        catch (AuthenticationException e)
        {
            throw new ProtocolViolation($"TLS handshake failed: {refusal ?? e.Message}");
        }
    }

    private async Task ListAsync(uint option, uint length, CancellationToken cancellationToken)
    {
        if (length != 0)
        {
            await SendOptionReplyAsync(option, RepErrInvalid, "NBD_OPT_LIST takes no data.", cancellationToken).ConfigureAwait(false);
            return;
        }
        byte[] name = Encoding.UTF8.GetBytes(Export.Name);
        byte[] description = Encoding.UTF8.GetBytes(Export.Description);
        var server = new byte[4 + name.Length + description.Length];
        BinaryPrimitives.WriteUInt32BigEndian(server, (uint)name.Length);
        name.CopyTo(server, 4);
        description.CopyTo(server, 4 + name.Length);
        await SendOptionReplyAsync(option, RepServer, server, cancellationToken).ConfigureAwait(false);
        await SendOptionReplyAsync(option, RepAck, Array.Empty<byte>(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>NBD_OPT_INFO or NBD_OPT_GO; true when the export was found and described.</summary>
    private async Task<bool> InfoAsync(uint option, byte[] data, CancellationToken cancellationToken)
    {
        // Name length (4), name, count of information requests (2), the requests (2 each), and nothing more.
        uint nameLength = data.Length >= 6 ? BinaryPrimitives.ReadUInt32BigEndian(data) : uint.MaxValue;
        if (nameLength > data.Length - 6)
        {
            await SendOptionReplyAsync(option, RepErrInvalid, "The option's data is malformed.", cancellationToken).ConfigureAwait(false);
            return false;
        }
        int count = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + (int)nameLength));
        if (data.Length != 4 + nameLength + 2 + 2 * count)
        {
            await SendOptionReplyAsync(option, RepErrInvalid, "The option's data is malformed.", cancellationToken).ConfigureAwait(false);
            return false;
        }
        if (!TryDecodeName(data.AsSpan(4, (int)nameLength), out string name) || !Export.Answers(name))
        {
            await SendOptionReplyAsync(option, RepErrUnknown, $"No export named '{name}'.", cancellationToken).ConfigureAwait(false);
            return false;
        }
        bool wantsName = false, wantsDescription = false;
        for (int i = 0; i < count; i++)
        {
            ushort type = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + (int)nameLength + 2 + 2 * i));
            wantsName |= type == InfoName;
            wantsDescription |= type == InfoDescription;
        }

        var export = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(export, InfoExport);
        BinaryPrimitives.WriteUInt64BigEndian(export.AsSpan(2), (ulong)Export.Device.SizeBytes);
        BinaryPrimitives.WriteUInt16BigEndian(export.AsSpan(10), TransmissionFlags);
        await SendOptionReplyAsync(option, RepInfo, export, cancellationToken).ConfigureAwait(false);
        if (wantsName) await SendInfoStringAsync(option, InfoName, Export.Name, cancellationToken).ConfigureAwait(false);
        if (wantsDescription && Export.Description.Length > 0)
            await SendInfoStringAsync(option, InfoDescription, Export.Description, cancellationToken).ConfigureAwait(false);
        // Sent whether asked or not (the protocol allows it): a client that did not ask still learns why an
        // unaligned request fails.
        var sizes = new byte[14];
        BinaryPrimitives.WriteUInt16BigEndian(sizes, InfoBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(2), (uint)Export.MinimumBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(6), (uint)Export.EffectivePreferredBlockSize(MaximumBlockSize));
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(10), (uint)MaximumBlockSize);
        await SendOptionReplyAsync(option, RepInfo, sizes, cancellationToken).ConfigureAwait(false);
        await SendOptionReplyAsync(option, RepAck, Array.Empty<byte>(), cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>What the export offers; DF only once structured replies are on, as the protocol requires.</summary>
    private ushort TransmissionFlags
    {
        get
        {
            int flags = FlagHasFlags;
            flags |= Export.IsReadOnly ? FlagReadOnly : FlagSendFlush | FlagSendFua | FlagSendTrim | FlagSendWriteZeroes;
            if (Export.MultiConn) flags |= FlagCanMultiConn;
            if (_structured) flags |= FlagSendDf;
            return (ushort)flags;
        }
    }

    private async Task SendExportNameReplyAsync(CancellationToken cancellationToken)
    {
        var reply = new byte[10 + (_noZeroes ? 0 : ExportNameZeroes)];
        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)Export.Device.SizeBytes);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), TransmissionFlags);
        await SendAsync(reply, cancellationToken).ConfigureAwait(false);
    }

    private Task SendInfoStringAsync(uint option, ushort type, string value, CancellationToken cancellationToken)
    {
        byte[] text = Encoding.UTF8.GetBytes(value);
        var info = new byte[2 + text.Length];
        BinaryPrimitives.WriteUInt16BigEndian(info, type);
        text.CopyTo(info, 2);
        return SendOptionReplyAsync(option, RepInfo, info, cancellationToken);
    }

    private Task SendOptionReplyAsync(uint option, uint type, string message, CancellationToken cancellationToken)
        => SendOptionReplyAsync(option, type, Encoding.UTF8.GetBytes(message), cancellationToken);

    private async Task SendOptionReplyAsync(uint option, uint type, byte[] data, CancellationToken cancellationToken)
    {
        var reply = new byte[OptionReplyHeaderLength + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), (uint)data.Length);
        data.CopyTo(reply, OptionReplyHeaderLength);
        await SendAsync(reply, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A last word before closing: the client may be gone already, which changes nothing.</summary>
    private async Task TrySendOptionReplyAsync(uint option, uint type, string message, CancellationToken cancellationToken)
    {
        try
        {
            await SendOptionReplyAsync(option, type, message, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or ObjectDisposedException)
        {
        }
    }

    private static bool TryDecodeName(ReadOnlySpan<byte> bytes, out string name)
    {
        try
        {
            name = s_strictUtf8.GetString(bytes);
            return !name.Contains('\0');
        }
        catch (DecoderFallbackException)
        {
            name = "(not UTF-8)";
            return false;
        }
    }
}
