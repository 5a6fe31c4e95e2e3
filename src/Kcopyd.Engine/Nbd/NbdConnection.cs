using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Threading.Channels;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Nbd;

/// <summary>One client of an <see cref="NbdServer"/>: its handshake, then a reader and a writer of its own.</summary>
/// <remarks>
/// The reader parses requests and submits them without waiting; the writer sends the replies in the order the device
/// finishes them. Whatever the client sends, the connection ends on its own and never throws: a failure is one line
/// in the server's log.
/// </remarks>
internal sealed partial class NbdConnection
{
    private static readonly TimeSpan TlsCloseBound = TimeSpan.FromSeconds(1);

    private readonly NbdServer _server;
    private readonly Socket _socket;
    /// <summary>The socket's stream, and once NBD_OPT_STARTTLS succeeded the TLS stream over it.</summary>
    private Stream _stream;
    private readonly NbdConnectionBudget _budget;
    private readonly CancellationTokenSource _reading;
    // Unbounded, because the budget already bounds it: every reply queued holds one of the budget's requests.
    private readonly Channel<NbdConnectionRequest> _replies =
        Channel.CreateUnbounded<NbdConnectionRequest>(new UnboundedChannelOptions { SingleReader = true });
    private Task? _writer;
    private string? _failure;

    public NbdConnection(NbdServer server, Socket socket, long id)
    {
        _server = server;
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        Id = id;
        _budget = new NbdConnectionBudget(server.Options.MaxRequestsPerConnection, server.Options.MaxBufferBytesPerConnection);
        _reading = CancellationTokenSource.CreateLinkedTokenSource(server.Stopping);
        MaximumBlockSize = server.Export.MaximumBlockSize(server.Options.MaxBufferBytesPerConnection);
    }

    public long Id { get; }

    public NbdExport Export => _server.Export;

    public IIoQueue Queue => _server.Queue;

    private int MaximumBlockSize { get; }

    /// <summary>Serves the client until it leaves, breaks the protocol or the server stops. Never throws.</summary>
    public async Task RunAsync()
    {
        try
        {
            if (await NegotiateAsync().ConfigureAwait(false))
            {
                _writer = Task.Run(WriteRepliesAsync);
                await ReadRequestsAsync(_reading.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_server.Stopping.IsCancellationRequested || _failure != null)
        {
            // The server is stopping, or the writer lost the client and said why.
        }
        catch (Exception e)
        {
            Fail(Describe(e));
        }
        finally
        {
            await EndAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Waits for the requests in flight and their replies (until the server's stop deadline), then closes. A request
    /// the device still holds after that frees its buffer when it completes, since its reply can no longer be queued.
    /// </summary>
    private async Task EndAsync()
    {
        try
        {
            _reading.Cancel();
            if (_writer != null)
            {
                try
                {
                    await _budget.WhenEmptyAsync(_server.HardStop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    Fail($"stopped with {_budget.Requests} requests still in flight");
                }
                _replies.Writer.TryComplete();
                await _writer.ConfigureAwait(false);
            }
        }
        catch (Exception e)
        {
            Fail(Describe(e));
        }
        finally
        {
            if (_stream is SslStream tls && _failure == null) await CloseTlsAsync(tls).ConfigureAwait(false);
            _stream.Dispose();
            try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception) { /* the client is gone already */ }
            _socket.Dispose();
            _reading.Dispose();
            if (_failure != null) _server.ConnectionFailed(this, _failure);
        }
    }

    /// <summary>Records why the connection ends (the first reason wins) and stops reading.</summary>
    private void Fail(string why)
    {
        Interlocked.CompareExchange(ref _failure, why, null);
        try { _reading.Cancel(); } catch (ObjectDisposedException) { }
    }

    /// <summary>TLS's own end (close_notify) before the socket closes, as the protocol asks; a client gone already changes nothing.</summary>
    private static async Task CloseTlsAsync(SslStream tls)
    {
        try
        {
            await tls.ShutdownAsync().WaitAsync(TlsCloseBound).ConfigureAwait(false);
        }
        catch (Exception)
        {
        }
    }

    private static string Describe(Exception e) => e switch
    {
        ProtocolViolation => e.Message,
        EndOfStreamException => e.Message,
        SocketException s => $"socket error: {s.SocketErrorCode}",
        IOException { InnerException: SocketException s } => $"socket error: {s.SocketErrorCode}",
        AuthenticationException => $"TLS handshake failed: {e.Message}",
        OperationCanceledException => "cancelled",
        _ => $"{e.GetType().Name}: {e.Message}",
    };

    internal void DeviceRequestStarted() => _server.DeviceRequestStarted();

    internal void DeviceRequestEnded() => _server.DeviceRequestEnded();

    /// <summary>All of <paramref name="data"/> (a stream's write is whole or throws).</summary>
    private ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        => _stream.WriteAsync(data, cancellationToken);

    /// <summary>Fills <paramref name="buffer"/>; false if the client closed before its first byte and <paramref name="endAllowed"/>.</summary>
    private async ValueTask<bool> ReceiveAsync(Memory<byte> buffer, bool endAllowed, string what, CancellationToken cancellationToken)
    {
        int received = 0;
        while (received < buffer.Length)
        {
            int n = await _stream.ReadAsync(buffer[received..], cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                if (received == 0 && endAllowed) return false;
                throw new EndOfStreamException($"the client left in the middle of {what} ({received} of {buffer.Length} bytes)");
            }
            received += n;
        }
        return true;
    }

    /// <summary>The client broke the protocol in a way that leaves no safe place to read on from.</summary>
    private sealed class ProtocolViolation(string message) : Exception(message);
}
