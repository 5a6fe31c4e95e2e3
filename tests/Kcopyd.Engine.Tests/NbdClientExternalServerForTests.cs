using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// An NBD server of another program for the NBD client's tests: nbdkit or qemu-nbd on a Unix socket in the
/// scratch folder, or nbdkit on a free TCP port of 127.0.0.1. Disposing kills it (and waits for it to go).
/// </summary>
public sealed class ExternalNbdServer : IDisposable
{
    private static readonly TimeSpan StartBound = TimeSpan.FromSeconds(20);
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private ExternalNbdServer(string file, IEnumerable<string> arguments, string uri, string pidFile, string? socket)
    {
        Uri = uri;
        SocketPath = socket;
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        // Both servers write their pid file once they listen; the socket file is there from the bind.
        var clock = Stopwatch.StartNew();
        while (!File.Exists(pidFile) || (socket != null && !File.Exists(socket)))
        {
            if (_process.HasExited || clock.Elapsed > StartBound)
            {
                string why = _process.HasExited ? $"exited with {_process.ExitCode}" : "timed out";
                Dispose();
                throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} did not come up ({why}): {Output}");
            }
            Thread.Sleep(10);
        }
    }

    /// <summary>The URI of the server's default export (or of the export named at the start).</summary>
    public string Uri { get; }

    public string? SocketPath { get; }

    public int ProcessId => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>What the server printed, for failure messages.</summary>
    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    /// <summary>nbdkit on a Unix socket: <paramref name="arguments"/> are its filters, plugin and parameters, e.g. "memory", "64M".</summary>
    public static ExternalNbdServer Nbdkit(Scratch scratch, params string[] arguments)
    {
        string name = "nbdkit-" + Guid.NewGuid().ToString("N")[..8];
        string socket = Path.Combine(scratch.Folder, name + ".sock");
        string pidFile = Path.Combine(scratch.Folder, name + ".pid");
        string[] all = ["--exit-with-parent", "-f", "-U", socket, "-P", pidFile, .. arguments];
        return new ExternalNbdServer("nbdkit", all, $"nbd+unix:///?socket={socket}", pidFile, socket);
    }

    /// <summary>nbdkit on a free port of 127.0.0.1 (tried again on another port if a concurrent test took it first).</summary>
    public static ExternalNbdServer NbdkitTcp(Scratch scratch, params string[] arguments)
    {
        for (int attempt = 1; ; attempt++)
        {
            int port = FreePort();
            string pidFile = Path.Combine(scratch.Folder, $"nbdkit-{port}.pid");
            string[] all = ["--exit-with-parent", "-f", "-i", "127.0.0.1", "-p", port.ToString(), "-P", pidFile, .. arguments];
            try
            {
                return new ExternalNbdServer("nbdkit", all, $"nbd://127.0.0.1:{port}/", pidFile, null);
            }
            catch (InvalidOperationException) when (attempt < 5)
            {
            }
        }
    }

    /// <summary>
    /// qemu-nbd serving a raw image on a Unix socket, persistent (-t) so it outlives each client, optionally under an
    /// export name, with <paramref name="options"/> (--object, --tls-creds) before the image.
    /// </summary>
    public static ExternalNbdServer QemuNbd(Scratch scratch, string image, string? exportName = null, params string[] options)
    {
        string name = "qemu-nbd-" + Guid.NewGuid().ToString("N")[..8];
        string socket = Path.Combine(scratch.Folder, name + ".sock");
        string pidFile = Path.Combine(scratch.Folder, name + ".pid");
        var all = new List<string> { "-t", "-k", socket, "-f", "raw", "--pid-file", pidFile };
        if (exportName != null) all.AddRange(["-x", exportName]);
        all.AddRange(options);
        all.Add(image);
        string uri = $"nbd+unix:///{exportName ?? ""}?socket={socket}";
        return new ExternalNbdServer("qemu-nbd", all, uri, pidFile, socket);
    }

    /// <summary>The URI asking for TLS (nbds, nbds+unix) with <paramref name="certificates"/> as tls-certificates, plus <paramref name="more"/> parameters.</summary>
    public string TlsUri(string certificates, string more = "")
    {
        string uri = Uri.Replace("nbd+unix://", "nbds+unix://").Replace("nbd://", "nbds://");
        return uri + (uri.Contains('?') ? "&" : "?") + $"tls-certificates={certificates}{more}";
    }

    /// <summary>The URI of another export name on this server.</summary>
    public string UriOf(string exportName)
        => SocketPath != null ? $"nbd+unix:///{exportName}?socket={SocketPath}" : Uri.TrimEnd('/') + "/" + exportName;

    /// <summary>SIGKILL: the server vanishes with requests in flight, as a crashed one does.</summary>
    public void Kill()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        Assert.True(_process.WaitForExit(10_000), "the NBD server did not die");
    }

    public void Dispose()
    {
        try
        {
            Kill();
        }
        catch (InvalidOperationException)
        {
            // Never started, or already reaped.
        }
        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line == null) return;
        lock (_output) _output.AppendLine(line);
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
