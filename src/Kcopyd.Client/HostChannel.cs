using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using StreamJsonRpc;

namespace Kcopyd.Client;

/// <summary>A connection to the Kcopyd host over its control socket, checked to speak this module's protocol.</summary>
public sealed class HostChannel : IHostChannel
{
    /// <summary>After Ctrl+C, how long a call waits for the host to confirm it stopped before giving the shell back.</summary>
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(2);

    /// <summary>A new host assembles its mirrors before it answers; a live one answers at once.</summary>
    private static readonly TimeSpan FirstAnswerTimeout = TimeSpan.FromSeconds(60);

    private readonly Socket _socket;
    private readonly JsonRpc _rpc;
    private readonly ConcurrentDictionary<long, PendingCall> _calls = new();
    private long _lastCallId;

    private HostChannel(Socket socket, string socketPath)
    {
        _socket = socket;
        SocketPath = socketPath;
        var stream = new NetworkStream(socket, ownsSocket: true);
        _rpc = new ControlRpc(new HeaderDelimitedMessageHandler(stream, stream, new SystemTextJsonFormatter { JsonSerializerOptions = ControlProtocol.SerializerOptions }));
        _rpc.AddLocalRpcTarget(new CallbackTarget(_calls));
        _rpc.StartListening();
    }

    public string SocketPath { get; }

    public HostInfo Host { get; private set; } = new();

    /// <summary>
    /// Also false when the host's end has closed and the reader has not noticed yet (a host killed a moment ago):
    /// between calls the host sends nothing, so a readable socket with nothing to read is at its end.
    /// </summary>
    public bool IsConnected
    {
        get
        {
            if (_rpc.Completion.IsCompleted) return false;
            try { return !(_socket.Poll(0, SelectMode.SelectRead) && _socket.Available == 0); }
            catch (Exception e) when (e is ObjectDisposedException or SocketException) { return false; }
        }
    }

    /// <summary>
    /// Asks GetHost first, which every version answers, and refuses a host of another protocol version, unless
    /// <paramref name="anyVersion"/> (Stop-KcopydHost: StopHost too is the same in every version).
    /// </summary>
    internal static HostChannel Open(Socket connected, string socketPath, bool anyVersion = false)
    {
        var channel = new HostChannel(connected, socketPath);
        try
        {
            using var timeout = new CancellationTokenSource(FirstAnswerTimeout);
            try
            {
                channel.Host = channel._rpc.InvokeWithCancellationAsync<HostInfo>(ControlProtocol.GetHost, [], timeout.Token).GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                throw new KcopydException("HostNotAnswering", KcopydErrorKind.DeviceError,
                    $"The Kcopyd host on '{socketPath}' did not answer within {FirstAnswerTimeout.TotalSeconds:0} s (a hung device while it assembles its mirrors?). Its log is host.log beside the socket.", socketPath);
            }
            catch (Exception e) when (e is ConnectionLostException or ObjectDisposedException or IOException)
            {
                throw new ClosedUnansweredException(socketPath);
            }
            if (!anyVersion && channel.Host.ProtocolVersion != ControlProtocol.Version)
                throw new KcopydException("HostVersionMismatch", KcopydErrorKind.InvalidOperation,
                    $"The Kcopyd host on '{socketPath}' (pid {channel.Host.ProcessId}, version {channel.Host.Version}) speaks protocol {channel.Host.ProtocolVersion}, " +
                    $"this module protocol {ControlProtocol.Version}. Stop it with Stop-KcopydHost -Force (it stops its jobs and closes its mirrors " +
                    "cleanly); the next cmdlet starts this module's host, which assembles the mirrors again.", socketPath);
            return channel;
        }
        catch
        {
            channel.Dispose();
            throw;
        }
    }

    public T Call<T>(string method, object?[] arguments, IOperationSink? sink, Func<bool> stopping)
    {
        long id = Interlocked.Increment(ref _lastCallId);
        var call = new PendingCall(sink);
        _calls[id] = call;
        using var cancel = new CancellationTokenSource();
        try
        {
            object?[] withId = method is ControlProtocol.GetHost or ControlProtocol.StopHost ? arguments : [id, .. arguments];
            var answer = _rpc.InvokeWithCancellationAsync<T>(method, withId, cancel.Token);
            answer.ContinueWith(_ => call.Wake(), TaskScheduler.Default);
            Stopwatch? stoppedFor = null;
            while (!answer.IsCompleted)
            {
                call.RunQueued(50);
                if (stoppedFor == null && stopping())
                {
                    stoppedFor = Stopwatch.StartNew();
                    call.Cancel();
                    cancel.Cancel();
                }
                // Ctrl+C gives the shell back even when the host is stuck on a hung device.
                if (stoppedFor?.Elapsed > StopGrace) throw new OperationCanceledException();
            }
            call.RunQueued(0);
            return Unwrap(answer);
        }
        finally
        {
            call.Cancel();
            _calls.TryRemove(id, out _);
        }
    }

    private T Unwrap<T>(Task<T> answer)
    {
        try
        {
            return answer.GetAwaiter().GetResult();
        }
        catch (RemoteInvocationException e) when (e.DeserializedErrorData is RemoteError { ErrorId.Length: > 0 } error)
        {
            throw error.ToException();
        }
        // Before RemoteRpcException, which ConnectionLostException derives from.
        catch (Exception e) when (e is ConnectionLostException or ObjectDisposedException or IOException)
        {
            throw new KcopydException("HostConnectionLost", KcopydErrorKind.DeviceError,
                $"The Kcopyd host (pid {Host.ProcessId}) went away during the call: it was stopped or killed. What it did before is in host.log beside " +
                $"'{SocketPath}'; the next cmdlet starts a host, which assembles the mirrors it has definitions of.", SocketPath);
        }
        catch (RemoteRpcException e)
        {
            throw new KcopydException("HostError", KcopydErrorKind.InvalidOperation, $"The Kcopyd host failed the call: {e.Message}", SocketPath);
        }
    }

    public void Dispose()
    {
        _rpc.Dispose();
        _socket.Dispose();
    }
}

/// <summary>
/// The host closed the connection before it answered GetHost: it refused our uid, or it is going away (killed, its
/// last I/O draining while its socket still takes connections). HostConnector tells the two apart.
/// </summary>
internal sealed class ClosedUnansweredException(string socketPath) : Exception($"The Kcopyd host on '{socketPath}' closed the connection unanswered.");

/// <summary>A JSON-RPC connection whose application errors carry a <see cref="RemoteError"/> as their data.</summary>
internal sealed class ControlRpc(IJsonRpcMessageHandler handler) : JsonRpc(handler)
{
    protected override Type? GetErrorDetailsDataType(StreamJsonRpc.Protocol.JsonRpcError error)
        => error.Error?.Code == (StreamJsonRpc.Protocol.JsonRpcErrorCode)ControlProtocol.KcopydErrorCode ? typeof(RemoteError) : base.GetErrorDetailsDataType(error);
}
