using System.Net.Sockets;
using Kcopyd.Host.Operations;
using Kcopyd.Host.Registry;
using Kcopyd.Protocol;
using StreamJsonRpc;
using Tmds.Linux;

namespace Kcopyd.Host;

/// <summary>Listens on the control socket and serves JSON-RPC to root and to the host's own user, nobody else.</summary>
internal sealed class ControlServer : IAsyncDisposable
{
    public const UnixFileMode SocketMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private readonly Socket _listener;
    private readonly FileStream _lock;
    private readonly HostRegistry _registry;
    private readonly HostOperations _host;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly uint _euid = LibC.geteuid();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private readonly TextWriter _log;

    public string SocketPath { get; }

    /// <summary>Connections made before this (while the host assembles its mirrors) wait for it to be answered.</summary>
    public void Ready() => _ready.TrySetResult();

    /// <summary>Cancelled when a client asked the host to stop (Stop-KcopydHost).</summary>
    public CancellationToken StopRequested => _registry.Stopping.Token;

    private ControlServer(string socketPath, Socket listener, FileStream hostLock, HostRegistry registry, TextWriter log)
    {
        SocketPath = socketPath;
        _listener = listener;
        _lock = hostLock;
        _log = log;
        _registry = registry;
        _host = new HostOperations(registry, socketPath);
        _accepting = AcceptLoopAsync();
    }

    /// <summary>Serves <paramref name="registry"/>, or an empty one with no state directory (tests of the socket alone).</summary>
    public static ControlServer Start(string runtimeDirectory, TextWriter log, HostRegistry? registry = null)
    {
        RuntimeDirectory.Prepare(runtimeDirectory);
        string path = Path.Combine(runtimeDirectory, ControlProtocol.SocketName);
        var hostLock = LockRuntimeDirectory(runtimeDirectory, path);
        try
        {
            RemoveStaleSocket(path);
            var server = new ControlServer(path, Listen(path), hostLock, registry ?? new HostRegistry(null, log), log);
            if (registry == null) server.Ready();
            return server;
        }
        catch
        {
            hostLock.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Two hosts starting at once (two cmdlets found none) must not both take the socket: the second could remove
    /// the first's socket between its probe and its bind. The lock is held for the host's life (flock).
    /// </summary>
    private static FileStream LockRuntimeDirectory(string runtimeDirectory, string socketPath)
    {
        try
        {
            return new FileStream(Path.Combine(runtimeDirectory, "host.lock"), new FileStreamOptions
            {
                Mode = FileMode.OpenOrCreate, Access = FileAccess.ReadWrite, Share = FileShare.None,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            });
        }
        catch (IOException)
        {
            throw new HostStartException($"A Kcopyd host already listens on '{socketPath}' (it holds the runtime directory's lock).", lockHeld: true);
        }
    }

    private static Socket Listen(string path)
    {
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            // bind made it 0777 less the umask; nobody else can reach it meanwhile, the directory being 0700.
            File.SetUnixFileMode(path, SocketMode);
            listener.Listen(64);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        return listener;
    }

    /// <summary>A socket left by a host that died is removed; one a live host answers on is not taken over.</summary>
    private static void RemoveStaleSocket(string path)
    {
        if (!File.Exists(path) && !Directory.Exists(path)) return;
        if ((File.GetAttributes(path) & FileAttributes.Directory) != 0)
            throw new HostStartException($"'{path}' is a directory, not the control socket.");
        using (var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(path));
                throw new HostStartException($"A Kcopyd host already listens on '{path}'.");
            }
            catch (SocketException) { }
        }
        File.Delete(path);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket connection;
            try { connection = await _listener.AcceptAsync(_stop.Token); }
            catch (OperationCanceledException) { return; }
            catch (ObjectDisposedException) { return; }
            _ = ServeAsync(connection);
        }
    }

    private async Task ServeAsync(Socket connection)
    {
        PeerCredentials peer;
        try { peer = PeerCredentials.Of(connection); }
        catch (SocketException e)
        {
            _log.WriteLine($"Closed a connection whose peer could not be read: {e.Message}");
            connection.Dispose();
            return;
        }
        if (peer.UserId != 0 && peer.UserId != _euid)
        {
            // Closed before a byte is read: an unprivileged peer learns nothing but that it was refused.
            _log.WriteLine($"Refused a connection from uid {peer.UserId} (pid {peer.ProcessId}): only root and uid {_euid} may drive the host.");
            connection.Dispose();
            return;
        }
        await _ready.Task;
        using var stream = new NetworkStream(connection, ownsSocket: true);
        // Content-Length headers, JSON (System.Text.Json, as the client). The service asks the cmdlet back on it.
        using var rpc = new JsonRpc(new HeaderDelimitedMessageHandler(stream, stream, new SystemTextJsonFormatter { JsonSerializerOptions = ControlProtocol.SerializerOptions }));
        using var service = new ControlService(_registry, _host, rpc, Path.GetDirectoryName(SocketPath)!);
        rpc.AddLocalRpcTarget(service);
        rpc.StartListening();
        try { await rpc.Completion; }
        catch (Exception e) { _log.WriteLine($"A client connection ended with an error: {e.Message}"); }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        await _accepting;
        try { File.Delete(SocketPath); } catch (IOException) { }
        _lock.Dispose();
        _stop.Dispose();
    }
}
