using System.Diagnostics;
using System.Net.Sockets;
using Kcopyd.Protocol;
using StreamJsonRpc;
using Tmds.Linux;

namespace Kcopyd.Host.Tests;

/// <summary>The control socket lets root and the host's own user in, and nobody else; these tests run as root.</summary>
public sealed class ControlSocketTests : IDisposable
{
    private readonly string _parent = Directory.CreateTempSubdirectory("kcopyd-host-").FullName;
    private readonly StringWriter _log = new();
    private string RuntimeDir => Path.Combine(_parent, "run");

    public void Dispose() => Directory.Delete(_parent, recursive: true);

    [Fact]
    public async Task The_runtime_directory_is_made_0700_and_the_socket_0600()
    {
        await using var server = ControlServer.Start(RuntimeDir, _log);

        Assert.Equal(RuntimeDirectory.Mode, File.GetUnixFileMode(RuntimeDir));
        Assert.Equal(ControlServer.SocketMode, File.GetUnixFileMode(server.SocketPath));
        Assert.Equal(Path.Combine(RuntimeDir, "control.sock"), server.SocketPath);
    }

    [Fact]
    public void An_existing_runtime_directory_that_others_may_enter_is_refused()
    {
        Directory.CreateDirectory(RuntimeDir);
        File.SetUnixFileMode(RuntimeDir, RuntimeDirectory.Mode | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);

        var e = Assert.Throws<HostStartException>(() => ControlServer.Start(RuntimeDir, _log));
        Assert.Contains("mode 711", e.Message);
        Assert.False(File.Exists(Path.Combine(RuntimeDir, "control.sock")));
    }

    [Fact]
    public unsafe void An_existing_runtime_directory_of_another_user_is_refused()
    {
        Directory.CreateDirectory(RuntimeDir, RuntimeDirectory.Mode);
        fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(RuntimeDir + "\0"))
            Assert.Equal(0, LibC.chown(p, 65534, 65534));

        var e = Assert.Throws<HostStartException>(() => ControlServer.Start(RuntimeDir, _log));
        Assert.Contains("belongs to uid 65534", e.Message);
    }

    [Fact]
    public async Task A_second_host_on_the_same_runtime_directory_is_refused_and_the_first_goes_on()
    {
        await using var first = ControlServer.Start(RuntimeDir, _log);

        var e = Assert.Throws<HostStartException>(() => ControlServer.Start(RuntimeDir, _log));
        Assert.Contains("already listens", e.Message);
        Assert.Equal(Environment.ProcessId, (await GetHostAsync(first.SocketPath)).ProcessId);
    }

    [Fact]
    public async Task A_socket_left_by_a_dead_host_is_replaced()
    {
        await using (ControlServer.Start(RuntimeDir, _log)) { }
        using (var dead = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            dead.Bind(new UnixDomainSocketEndPoint(Path.Combine(RuntimeDir, ControlProtocol.SocketName))); // never listens

        await using var server = ControlServer.Start(RuntimeDir, _log);
        Assert.Equal(ControlServer.SocketMode, File.GetUnixFileMode(server.SocketPath));
        Assert.Equal(Environment.ProcessId, (await GetHostAsync(server.SocketPath)).ProcessId);
    }

    [Fact]
    public async Task GetHost_answers_the_protocol_version_and_who_the_host_is()
    {
        await using var server = ControlServer.Start(RuntimeDir, _log);

        HostInfo info = await GetHostAsync(server.SocketPath);

        Assert.Equal(ControlProtocol.Version, info.ProtocolVersion);
        Assert.Equal(Environment.ProcessId, info.ProcessId);
        Assert.Equal(server.SocketPath, info.SocketPath);
        Assert.Equal("0.1.0", info.Version);
        Assert.InRange(info.StartTime, DateTimeOffset.Now.AddHours(-1), DateTimeOffset.Now);
    }

    [Fact]
    public async Task A_peer_of_uid_65534_is_closed_unanswered_even_past_the_file_modes()
    {
        await using var server = ControlServer.Start(RuntimeDir, _log);

        // The same raw client as root is answered, so "closed" below is the host's doing, not the client's.
        Assert.Equal("uid 0 answered", await RunPythonClientAsync(server.SocketPath, asNobody: false, overrideModes: false));
        // CAP_DAC_OVERRIDE walks past the 0700 directory and the 0600 socket, so only SO_PEERCRED stands in the way.
        Assert.Equal("uid 65534 closed", await RunPythonClientAsync(server.SocketPath, asNobody: true, overrideModes: true));
        Assert.Contains("Refused a connection from uid 65534", _log.ToString());
        // The host goes on serving its own.
        Assert.Equal(ControlProtocol.Version, (await GetHostAsync(server.SocketPath)).ProtocolVersion);
    }

    [Fact]
    public async Task Without_privileges_uid_65534_cannot_reach_the_socket_at_all()
    {
        await using var server = ControlServer.Start(RuntimeDir, _log);

        Assert.Equal("uid 65534 denied", await RunPythonClientAsync(server.SocketPath, asNobody: true, overrideModes: false));
    }

    [Fact]
    public async Task The_host_process_serves_its_own_pid_and_removes_the_socket_on_SIGTERM()
    {
        string hostDll = Path.Combine(AppContext.BaseDirectory, "Kcopyd.Host.dll");
        var start = new ProcessStartInfo("dotnet", [hostDll]) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["KCOPYD_RUNTIME_DIR"] = RuntimeDir;
        start.Environment["KCOPYD_STATE_DIR"] = Path.Combine(_parent, "state");
        using var host = Process.Start(start)!;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            string? line = await host.StandardOutput.ReadLineAsync(timeout.Token);
            string socketPath = Path.Combine(RuntimeDir, ControlProtocol.SocketName);
            Assert.Equal($"Listening on {socketPath}", line);

            Assert.Equal(host.Id, (await GetHostAsync(socketPath)).ProcessId);

            Assert.Equal(0, LibC.kill(host.Id, LibC.SIGTERM));
            await host.WaitForExitAsync(timeout.Token);
            Assert.Equal(0, host.ExitCode);
            Assert.False(File.Exists(socketPath));
        }
        finally
        {
            if (!host.HasExited) host.Kill();
        }
    }

    private static async Task<HostInfo> GetHostAsync(string socketPath)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        using var rpc = JsonRpc.Attach(new NetworkStream(socket, ownsSocket: false));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        return await rpc.InvokeWithCancellationAsync<HostInfo>(ControlProtocol.GetHost, [], timeout.Token);
    }

    // A client that speaks the wire format by hand (header-delimited JSON-RPC) and says what became of its call.
    private const string PythonClient = """
        import os, socket, sys
        who = 'uid %d ' % os.getuid()
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        try:
            s.connect(sys.argv[1])
        except PermissionError:
            print(who + 'denied'); sys.exit()
        body = b'{"jsonrpc":"2.0","id":1,"method":"GetHost","params":[]}'
        try:
            s.sendall(b'Content-Length: %d\r\n\r\n' % len(body) + body)
            print(who + ('answered' if s.recv(65536) else 'closed'))
        except (ConnectionResetError, BrokenPipeError):
            print(who + 'closed')
        """;

    private static async Task<string> RunPythonClientAsync(string socketPath, bool asNobody, bool overrideModes)
    {
        var start = new ProcessStartInfo(asNobody ? "setpriv" : "/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        if (asNobody)
        {
            foreach (string a in new[] { "--reuid=65534", "--regid=65534", "--clear-groups" }) start.ArgumentList.Add(a);
            if (overrideModes) { start.ArgumentList.Add("--inh-caps=+dac_override"); start.ArgumentList.Add("--ambient-caps=+dac_override"); }
            start.ArgumentList.Add("/usr/bin/python3");
        }
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(PythonClient);
        start.ArgumentList.Add(socketPath);
        using var client = Process.Start(start)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        string output = await client.StandardOutput.ReadToEndAsync(timeout.Token);
        string errors = await client.StandardError.ReadToEndAsync(timeout.Token);
        await client.WaitForExitAsync(timeout.Token);
        Assert.True(client.ExitCode == 0, $"the client failed ({client.ExitCode}): {errors}");
        return output.Trim();
    }
}
