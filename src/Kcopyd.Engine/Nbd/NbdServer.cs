using System.Net;
using System.Net.Sockets;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Nbd;

/// <summary>
/// Serves one <see cref="Devices.IBlockDevice"/> over NBD (fixed newstyle, structured replies, many requests in flight per
/// connection, several connections at once) on a listening socket the caller bound: a Unix socket or TCP.
/// </summary>
/// <remarks>
/// The server takes the listener over and closes it when it stops. It has an I/O queue of its own for the device's
/// requests. It does not own the device: dispose that after <see cref="StopAsync"/>. Without
/// <see cref="NbdExport.Tls"/> it serves in plain text: serve on a Unix socket or a trusted network only.
/// </remarks>
public sealed class NbdServer : IAsyncDisposable
{
    /// <summary>Beyond the stop deadline, how long stopping still waits for a connection to return from the device.</summary>
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(2);

    private const int DefaultBacklog = 128;

    private readonly Socket _listener;
    private readonly TextWriter? _log;
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationTokenSource _hardStop = new();
    private readonly object _lock = new();
    private readonly Dictionary<long, Task> _connections = new();
    private Task _acceptLoop = Task.CompletedTask;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _stopStarted;
    private int _connectionCount;
    private long _totalConnections;
    private long _refusedConnections;
    private long _failedConnections;
    private long _requests;
    private long _requestErrors;
    private long _bytesRead;
    private long _bytesWritten;
    private long _deviceInFlight;
    private long _peakDeviceRequests;
    private long _buffersInUse;
    private int _disposeQueueWhenIdle;
    private int _queueDisposed;

    private NbdServer(Socket listener, NbdExport export, NbdServerOptions options, TextWriter? log)
    {
        _listener = listener;
        Export = export;
        Options = options;
        _log = log == null ? null : TextWriter.Synchronized(log);
        Queue = IoQueueFactory.Create("nbd-" + (export.Name.Length > 0 ? export.Name : "default"), options.IoDepth, options.IoBackend);
    }

    public NbdExport Export { get; }

    public NbdServerOptions Options { get; }

    /// <summary>Where clients connect: the Unix socket's path or the TCP address and port.</summary>
    public EndPoint? LocalEndPoint { get; private set; }

    /// <summary>Connections open now, in their handshake or transmission.</summary>
    public int ConnectionCount => Volatile.Read(ref _connectionCount);

    /// <summary>True once <see cref="StopAsync"/> was called.</summary>
    public bool IsStopping => _stopping.IsCancellationRequested;

    internal IIoQueue Queue { get; }

    /// <summary>The most requests the device held at once: shows a test that requests really overlapped.</summary>
    internal long PeakDeviceRequests => Interlocked.Read(ref _peakDeviceRequests);

    /// <summary>Request buffers allocated and not yet freed, across all connections: 0 once everything has ended.</summary>
    internal long BuffersInUse => Interlocked.Read(ref _buffersInUse);

    internal void BufferAllocated() => Interlocked.Increment(ref _buffersInUse);

    internal void BufferFreed() => Interlocked.Decrement(ref _buffersInUse);

    /// <summary>Cancelled when stopping begins: readers stop reading, the accept loop ends.</summary>
    internal CancellationToken Stopping => _stopping.Token;

    /// <summary>Cancelled at the stop deadline: whatever is still unsent is dropped and the sockets close.</summary>
    internal CancellationToken HardStop => _hardStop.Token;

    public static NbdServer Start(Socket listener, NbdExport export, TextWriter? log = null)
        => Start(listener, export, new NbdServerOptions(), log);

    /// <summary>Starts accepting on <paramref name="listener"/> (bound; listening or not) and returns at once.</summary>
    public static NbdServer Start(Socket listener, NbdExport export, NbdServerOptions options, TextWriter? log = null)
    {
        ArgumentNullException.ThrowIfNull(listener);
        ArgumentNullException.ThrowIfNull(export);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        export.Validate(options.MaxBufferBytesPerConnection);
        if (listener.SocketType != SocketType.Stream)
            throw new ArgumentException("NBD runs over a stream socket (Unix or TCP).", nameof(listener));
        if (!listener.IsBound) throw new ArgumentException("Bind the listener before starting the server.", nameof(listener));
        listener.Listen(Math.Max(options.MaxConnections, DefaultBacklog)); // listening again only sets the backlog

        var server = new NbdServer(listener, export, options, log);
        server.LocalEndPoint = listener.LocalEndPoint;
        server._acceptLoop = Task.Run(server.AcceptAsync);
        return server;
    }

    public NbdServerStatistics GetStatistics() => new(
        ConnectionCount,
        Interlocked.Read(ref _totalConnections),
        Interlocked.Read(ref _refusedConnections),
        Interlocked.Read(ref _failedConnections),
        Interlocked.Read(ref _requests),
        Interlocked.Read(ref _requestErrors),
        Interlocked.Read(ref _bytesRead),
        Interlocked.Read(ref _bytesWritten));

    /// <summary>
    /// Stops accepting, stops reading requests, waits for the requests in flight and their replies until
    /// <see cref="NbdServerOptions.StopTimeout"/>, then closes every connection. Bounded even when the device hangs:
    /// a request still at the device then keeps only its buffer, freed when it completes. Safe to call again.
    /// </summary>
    public Task StopAsync()
    {
        // Started outside any lock: cancelling may run a reader's continuation inline, which takes the lock itself.
        if (Interlocked.Exchange(ref _stopStarted, 1) == 0) _ = RunStopAsync();
        return _stopped.Task;
    }

    private async Task RunStopAsync()
    {
        try
        {
            await StopCoreAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Log($"stopping failed: {e.GetType().Name}: {e.Message}");
        }
        finally
        {
            _stopped.TrySetResult();
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    private async Task StopCoreAsync()
    {
        _stopping.Cancel();
        _hardStop.CancelAfter(Options.StopTimeout);
        try { _listener.Dispose(); } catch (Exception) { /* closing is all that is left to do with it */ }
        await _acceptLoop.ConfigureAwait(false);
        Task[] connections;
        lock (_lock) connections = [.. _connections.Values];
        // A reader inside the device's Submit (a mirror's full request pool behind a hung leg) cannot be cancelled:
        // stopping waits a little past the deadline for it, then leaves it to end on its own.
        var all = Task.WhenAll(connections);
        await Task.WhenAny(all, Task.Delay(Options.StopTimeout + StopGrace)).ConfigureAwait(false);
        if (!all.IsCompleted) Log($"stopped with {ConnectionCount} connections still inside the device");
        Volatile.Write(ref _disposeQueueWhenIdle, 1);
        if (Interlocked.Read(ref _deviceInFlight) == 0) DisposeQueue();
    }

    private async Task AcceptAsync()
    {
        bool failing = false;
        while (true)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
                failing = false;
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                // Out of descriptors, a connection reset before it was accepted: the next one may do better. Said once
                // per run of failures, so a full fd table does not fill the log.
                if (!failing) Log($"accepting failed: {e.SocketErrorCode}; retrying");
                failing = true;
                try { await Task.Delay(100, _stopping.Token).ConfigureAwait(false); } catch (OperationCanceledException) { return; }
                continue;
            }
            catch (Exception e)
            {
                Log($"no longer accepting: {e.GetType().Name}: {e.Message}");
                return;
            }
            Admit(client);
        }
    }

    private void Admit(Socket client)
    {
        long id = Interlocked.Increment(ref _totalConnections);
        if (Volatile.Read(ref _connectionCount) >= Options.MaxConnections)
        {
            Interlocked.Increment(ref _refusedConnections);
            Log($"connection {id} refused: {Options.MaxConnections} connections are open already");
            client.Dispose();
            return;
        }
        try
        {
            if (client.ProtocolType == ProtocolType.Tcp) client.NoDelay = true; // replies are small and must not wait
        }
        catch (SocketException)
        {
            // Reset before it was served: the connection's first read says so.
        }
        Interlocked.Increment(ref _connectionCount);
        var connection = new NbdConnection(this, client, id);
        // Listed before it starts, so it cannot end (and unlist itself) before it is listed.
        lock (_lock) _connections[id] = Task.CompletedTask;
        var task = Task.Run(() => ServeAsync(connection));
        lock (_lock)
        {
            if (_connections.ContainsKey(id)) _connections[id] = task;
        }
    }

    /// <summary>Runs a connection and counts it out inside its own task, so whoever awaits the task sees the count already down.</summary>
    private async Task ServeAsync(NbdConnection connection)
    {
        try
        {
            await connection.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            lock (_lock) _connections.Remove(connection.Id);
            Interlocked.Decrement(ref _connectionCount);
        }
    }

    internal void ConnectionFailed(NbdConnection connection, string why)
    {
        Interlocked.Increment(ref _failedConnections);
        Log($"connection {connection.Id} ended: {why}");
    }

    internal void RequestReceived() => Interlocked.Increment(ref _requests);

    internal void RequestFailed() => Interlocked.Increment(ref _requestErrors);

    internal void BytesReadAdded(long bytes) => Interlocked.Add(ref _bytesRead, bytes);

    internal void BytesWrittenAdded(long bytes) => Interlocked.Add(ref _bytesWritten, bytes);

    internal void DeviceRequestStarted()
    {
        long now = Interlocked.Increment(ref _deviceInFlight);
        long peak;
        while (now > (peak = Interlocked.Read(ref _peakDeviceRequests)) && Interlocked.CompareExchange(ref _peakDeviceRequests, now, peak) != peak)
        {
        }
    }

    /// <summary>On the I/O queue's thread: the queue cannot be disposed there, so the last one after a stop hands that on.</summary>
    internal void DeviceRequestEnded()
    {
        if (Interlocked.Decrement(ref _deviceInFlight) == 0 && Volatile.Read(ref _disposeQueueWhenIdle) == 1)
            ThreadPool.UnsafeQueueUserWorkItem(static s => s.DisposeQueue(), this, preferLocal: false);
    }

    private void DisposeQueue()
    {
        if (Interlocked.Exchange(ref _queueDisposed, 1) != 0) return;
        try
        {
            Queue.Dispose();
        }
        catch (Exception e)
        {
            Log($"closing the I/O queue failed: {e.Message}");
        }
    }

    internal void Log(string message)
    {
        try
        {
            _log?.WriteLine($"nbd '{Export.Name}': {message}");
        }
        catch (Exception)
        {
            // A log that fails must not take a connection down with it.
        }
    }
}
