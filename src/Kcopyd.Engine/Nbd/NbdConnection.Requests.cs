using System.Buffers.Binary;
using Kcopyd.Engine.Io;
using static Kcopyd.Engine.Nbd.NbdProtocol;

namespace Kcopyd.Engine.Nbd;

/// <summary>The transmission phase's reader: each request is checked, then submitted without waiting for it.</summary>
/// <remarks>
/// A request that fails its checks is answered with an error and touches nothing. A WRITE refused that way (too
/// long, past the end, unaligned, read-only export) still has its payload read and thrown away, through a small
/// buffer and at any length, so the next header is found where the client put it and the connection goes on.
/// Only a bad magic ends the connection: after it there is no telling where the next request starts.
/// </remarks>
internal sealed partial class NbdConnection
{
    private const int DiscardBufferBytes = 64 * 1024;
    private const ushort KnownCommandFlags = CmdFlagFua | CmdFlagNoHole | CmdFlagDf | CmdFlagReqOne | CmdFlagFastZero;

    private byte[]? _discardBuffer;

    private async Task ReadRequestsAsync(CancellationToken cancellationToken)
    {
        var header = new byte[RequestHeaderLength];
        while (await ReceiveAsync(header, endAllowed: true, "a request header", cancellationToken).ConfigureAwait(false))
        {
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(header);
            ushort flags = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4));
            ushort command = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6));
            ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
            ulong offset = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(16));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(24));
            if (magic != RequestMagic) throw new ProtocolViolation($"bad request magic 0x{magic:x8}");
            _server.RequestReceived();
            // The requests already in flight are still answered (EndAsync waits for them), then the connection closes.
            if (command == CmdDisconnect) return;

            uint error = Check(command, flags, offset, length);
            if (error != 0)
            {
                if (command == CmdWrite) await DiscardAsync(length, cancellationToken).ConfigureAwait(false);
                await AnswerAtOnceAsync(command, flags, cookie, offset, length, error, cancellationToken).ConfigureAwait(false);
                continue;
            }
            bool fua = (flags & CmdFlagFua) != 0;
            switch (command)
            {
                case CmdRead:
                    await StartAsync(BlockOperation.Read, command, flags, cookie, offset, length, fua: false, cancellationToken).ConfigureAwait(false);
                    break;
                case CmdWrite:
                    await StartAsync(BlockOperation.Write, command, flags, cookie, offset, length, fua, cancellationToken).ConfigureAwait(false);
                    break;
                case CmdFlush:
                    if (Export.IsReadOnly) goto default; // nothing can be dirty: nothing to flush
                    await StartAsync(BlockOperation.Flush, command, flags, cookie, 0, 0, fua: false, cancellationToken).ConfigureAwait(false);
                    break;
                case CmdTrim:
                    await StartAsync(BlockOperation.Discard, command, flags, cookie, offset, length, fua, cancellationToken).ConfigureAwait(false);
                    break;
                case CmdWriteZeroes:
                    // Always a real zeroing (BLKZEROOUT, fallocate ZERO_RANGE or written zeros), so NO_HOLE is honoured either way.
                    await StartAsync(BlockOperation.WriteZeroes, command, flags, cookie, offset, length, fua, cancellationToken).ConfigureAwait(false);
                    break;
                default:
                    // CACHE (not advertised, but harmless) and a read-only FLUSH succeed without touching the device.
                    await AnswerAtOnceAsync(command, flags, cookie, offset, length, 0, cancellationToken).ConfigureAwait(false);
                    break;
            }
        }
    }

    /// <summary>The NBD error a request earns before it reaches the device, or 0.</summary>
    private uint Check(ushort command, ushort flags, ulong offset, uint length)
    {
        // FAST_ZERO is not advertised: a device's zeroing may fall back to writing zeros, which is not fast.
        if ((flags & ~KnownCommandFlags) != 0 || (flags & CmdFlagFastZero) != 0) return ErrInval;
        switch (command)
        {
            case CmdRead:
                return CheckRange(offset, length, (uint)MaximumBlockSize, pastEnd: ErrInval);
            case CmdWrite:
                // The protocol asks for ENOSPC when a write (or zeroing) reaches past the end.
                return Export.IsReadOnly ? ErrPerm : CheckRange(offset, length, (uint)MaximumBlockSize, pastEnd: ErrNoSpc);
            case CmdFlush:
                return 0;
            case CmdTrim:
                // No payload, so no buffer: the maximum block size does not apply.
                return Export.IsReadOnly ? ErrPerm : CheckRange(offset, length, uint.MaxValue, pastEnd: ErrInval);
            case CmdWriteZeroes:
                return Export.IsReadOnly ? ErrPerm : CheckRange(offset, length, uint.MaxValue, pastEnd: ErrNoSpc);
            case CmdCache:
                return CheckRange(offset, length, uint.MaxValue, pastEnd: ErrInval);
            default:
                // BLOCK_STATUS without a negotiated meta context, and commands we do not know.
                return ErrInval;
        }
    }

    private uint CheckRange(ulong offset, uint length, uint maximum, uint pastEnd)
    {
        uint block = (uint)Export.MinimumBlockSize;
        if (length == 0 || length > maximum || offset % block != 0 || length % block != 0) return ErrInval;
        ulong size = (ulong)Export.Device.SizeBytes;
        return offset > size || length > size - offset ? pastEnd : 0;
    }

    /// <summary>Takes the budget, reads a WRITE's payload into its buffer, and submits.</summary>
    private async Task StartAsync(BlockOperation operation, ushort command, ushort flags, ulong cookie, ulong offset, uint length, bool fua,
        CancellationToken cancellationToken)
    {
        bool hasData = operation is BlockOperation.Read or BlockOperation.Write;
        long bytes = hasData ? length : 0;
        await _budget.TakeAsync(bytes, cancellationToken).ConfigureAwait(false);
        NbdConnectionRequest request;
        try
        {
            request = new NbdConnectionRequest(this, command, flags, cookie, offset, length, bytes)
            {
                Buffer = hasData ? new NbdConnectionBuffer(_server, (int)length) : null,
                FlushAfter = fua,
            };
        }
        catch
        {
            _budget.Release(bytes);
            throw;
        }
        if (operation == BlockOperation.Write)
        {
            try
            {
                await ReceiveAsync(request.Buffer!.Memory, endAllowed: false, "a write's payload", cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or System.Net.Sockets.SocketException)
            {
                // Answered where the client can still read it, and never submitted: half a payload is not the client's data.
                request.Answer((int)ErrInval);
                throw;
            }
        }
        request.Submit(operation, Queue);
    }

    /// <summary>Queues a reply that needs no device, under the same budget as every other reply.</summary>
    private async Task AnswerAtOnceAsync(ushort command, ushort flags, ulong cookie, ulong offset, uint length, uint error,
        CancellationToken cancellationToken)
    {
        await _budget.TakeAsync(0, cancellationToken).ConfigureAwait(false);
        new NbdConnectionRequest(this, command, flags, cookie, offset, length, budgetBytes: 0).Answer((int)error);
    }

    private async Task DiscardAsync(uint length, CancellationToken cancellationToken)
    {
        _discardBuffer ??= new byte[DiscardBufferBytes];
        long left = length;
        while (left > 0)
        {
            int chunk = (int)Math.Min(left, _discardBuffer.Length);
            await ReceiveAsync(_discardBuffer.AsMemory(0, chunk), endAllowed: false, "a refused write's payload", cancellationToken)
                .ConfigureAwait(false);
            left -= chunk;
        }
    }
}
