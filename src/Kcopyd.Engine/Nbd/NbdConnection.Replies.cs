using System.Buffers.Binary;
using static Kcopyd.Engine.Nbd.NbdProtocol;

namespace Kcopyd.Engine.Nbd;

/// <summary>The transmission phase's writer: replies in the order requests finish, each matched by its cookie.</summary>
internal sealed partial class NbdConnection
{
    private const int StructuredReadHeaderLength = StructuredReplyHeaderLength + 8;
    private const int StructuredErrorLength = StructuredReplyHeaderLength + 6;

    /// <summary>
    /// Queues a finished request's reply. Called from the device's completion (the I/O queue's thread) or the
    /// reader, so it only counts and hands over. Once the connection has ended nothing will send it: the buffer
    /// is freed here, which is how a request the device held past the end gives its memory back.
    /// </summary>
    internal void Answer(NbdConnectionRequest request)
    {
        if (request.Error != 0) _server.RequestFailed();
        else if (request.Command == CmdWrite) _server.BytesWrittenAdded(request.Length);
        else if (request.Command == CmdRead) _server.BytesReadAdded(request.Length);
        if (!_replies.Writer.TryWrite(request)) request.Buffer?.Free();
    }

    /// <summary>
    /// Sends every reply queued until the reader is done and the queue is completed. After the client is lost it
    /// goes on taking replies, only to free their buffers and budget, so nothing waits on a dead socket.
    /// </summary>
    private async Task WriteRepliesAsync()
    {
        var header = new byte[StructuredReadHeaderLength];
        bool lost = false;
        var replies = _replies.Reader;
        while (await replies.WaitToReadAsync().ConfigureAwait(false))
        {
            while (replies.TryRead(out var request))
            {
                if (!lost)
                {
                    try
                    {
                        await SendReplyAsync(request, header).ConfigureAwait(false);
                    }
                    catch (Exception e)
                    {
                        lost = true;
                        Fail(e is OperationCanceledException ? "replies still unsent at the stop deadline" : "sending a reply: " + Describe(e));
                    }
                }
                request.Buffer?.Free();
                _budget.Release(request.BudgetBytes);
            }
        }
    }

    private async ValueTask SendReplyAsync(NbdConnectionRequest request, byte[] header)
    {
        var cancellationToken = _server.HardStop;
        bool isRead = request.Command == CmdRead;
        if (isRead && _structured)
        {
            if (request.Error == 0)
            {
                WriteChunkHeader(header, ReplyTypeOffsetData, request.Cookie, 8 + request.Length);
                BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(StructuredReplyHeaderLength), request.Offset);
                await SendAsync(header.AsMemory(0, StructuredReadHeaderLength), cancellationToken).ConfigureAwait(false);
                await SendAsync(request.Buffer!.Memory, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                // An ERROR chunk: the error (4) and an empty message (2).
                WriteChunkHeader(header, ReplyTypeError, request.Cookie, 6);
                BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(StructuredReplyHeaderLength), request.Error);
                BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(StructuredReplyHeaderLength + 4), 0);
                await SendAsync(header.AsMemory(0, StructuredErrorLength), cancellationToken).ConfigureAwait(false);
            }
            return;
        }
        // Every other reply is simple, which the protocol allows with structured replies on too.
        WriteSimpleReplyHeader(header, request.Error, request.Cookie);
        await SendAsync(header.AsMemory(0, SimpleReplyHeaderLength), cancellationToken).ConfigureAwait(false);
        if (isRead && request.Error == 0) await SendAsync(request.Buffer!.Memory, cancellationToken).ConfigureAwait(false);
    }

    private static void WriteChunkHeader(Span<byte> header, ushort type, ulong cookie, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(header, StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(header[4..], ReplyFlagDone);
        BinaryPrimitives.WriteUInt16BigEndian(header[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(header[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(header[16..], length);
    }
}
