using System.Net.Sockets;
using Kcopyd.Host.Protocol;
using StreamJsonRpc;
using Tmds.Linux;

namespace Kcopyd.Host;

/// <summary>Listens on the control socket and serves JSON-RPC to root and to the host's own user, nobody else.</summary>
internal sealed class ControlServer : IAsyncDisposable
{
    public const UnixFileMode SocketMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private readonly Socket _listener;
    private readonly ControlService _service;
    private readonly uint _euid = LibC.geteuid();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private readonly TextWriter _log;

    public string SocketPath { get; }

    private ControlServer(string socketPath, Socket listener, TextWriter log)
    {
        SocketPath = socketPath;
        _listener = listener;
        _log = log;
        _service = new ControlService(socketPath);
        _accepting = AcceptLoopAsync();
    }

    public static ControlServer Start(string runtimeDirectory, TextWriter log)
    {
        RuntimeDirectory.Prepare(runtimeDirectory);
        string path = Path.Combine(runtimeDirectory, ControlProtocol.SocketName);
        RemoveStaleSocket(path);
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
        return new ControlServer(path, listener, log);
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
        using var stream = new NetworkStream(connection, ownsSocket: true);
        using var rpc = JsonRpc.Attach(stream, _service);
        try { await rpc.Completion; }
        catch (Exception e) { _log.WriteLine($"A client connection ended with an error: {e.Message}"); }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        await _accepting;
        try { File.Delete(SocketPath); } catch (IOException) { }
        _stop.Dispose();
    }
}
