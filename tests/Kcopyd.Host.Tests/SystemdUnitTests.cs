using System.Diagnostics;
using Kcopyd.Protocol;
using Tmds.Linux;

namespace Kcopyd.Host.Tests;

/// <summary>The unit `--systemd-unit` writes starts this very host, the way systemd would run its ExecStart.</summary>
public sealed class SystemdUnitTests : IDisposable
{
    private readonly string _parent = Directory.CreateTempSubdirectory("kcopyd-unit-").FullName;

    public void Dispose() => Directory.Delete(_parent, recursive: true);

    [Fact]
    public async Task The_unit_names_this_host_and_its_ExecStart_runs_it_until_SIGTERM()
    {
        string hostDll = Path.Combine(AppContext.BaseDirectory, "Kcopyd.Host.dll");
        string unit = await RunToEndAsync("dotnet", hostDll, "--systemd-unit");

        string[] lines = unit.Split('\n', StringSplitOptions.TrimEntries);
        Assert.Contains("[Service]", lines);
        Assert.Contains("[Install]", lines);
        Assert.Contains("KillSignal=SIGTERM", lines);
        Assert.Contains("Environment=KCOPYD_RUNTIME_DIR=/run/kcopyd", lines);
        Assert.Contains("Environment=KCOPYD_STATE_DIR=/var/lib/kcopyd", lines);
        string[] exec = lines.Single(l => l.StartsWith("ExecStart=", StringComparison.Ordinal))["ExecStart=".Length..].Split(' ');
        Assert.True(File.Exists(exec[0]), $"ExecStart names '{exec[0]}', which does not exist");
        Assert.Equal(hostDll, exec[1]);

        // systemd would run it with the unit's environment; the test points it at directories of its own.
        var start = new ProcessStartInfo(exec[0], exec[1..]) { RedirectStandardOutput = true, RedirectStandardError = true };
        string runtime = Path.Combine(_parent, "run");
        start.Environment["KCOPYD_RUNTIME_DIR"] = runtime;
        start.Environment["KCOPYD_STATE_DIR"] = Path.Combine(_parent, "state");
        using var host = Process.Start(start)!;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal($"Listening on {Path.Combine(runtime, ControlProtocol.SocketName)}", await host.StandardOutput.ReadLineAsync(timeout.Token));
            Assert.Equal(0, LibC.kill(host.Id, LibC.SIGTERM));
            await host.WaitForExitAsync(timeout.Token);
            Assert.Equal(0, host.ExitCode);
        }
        finally
        {
            if (!host.HasExited) host.Kill();
        }
    }

    private static async Task<string> RunToEndAsync(string file, params string[] arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true })!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        string output = await process.StandardOutput.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        Assert.Equal(0, process.ExitCode);
        return output;
    }
}
