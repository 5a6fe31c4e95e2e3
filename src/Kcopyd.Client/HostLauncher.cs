using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Kcopyd.Client;

/// <summary>
/// Starts the host the module ships (bin/host/Kcopyd.Host.dll) in a session of its own, so it outlives the pwsh
/// that started it and Ctrl+C or a closed terminal there never reaches it. Once it listens it lets go of the pipes.
/// </summary>
internal static class HostLauncher
{
    /// <summary>A host assembles its mirrors before it listens: reading their logs and a sample of their legs.</summary>
    private static readonly TimeSpan ListenTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Null once a host listens (ours, or another cmdlet's started at the same moment: <paramref name="listening"/>
    /// says when one answers); otherwise why ours did not, in its own words.
    /// </summary>
    public static string? Start(string runtimeDirectory, Func<bool> listening)
    {
        string moduleBin = Path.GetDirectoryName(Path.GetDirectoryName(typeof(HostLauncher).Assembly.Location))!;
        string hostAssembly = Path.Combine(moduleBin, "host", "Kcopyd.Host.dll");
        if (!File.Exists(hostAssembly)) return $"the module has no host at '{hostAssembly}' (rebuild or reinstall the module).";
        var start = new ProcessStartInfo
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        // setsid(1) makes the host a session leader without a terminal; it execs in place (we are no group leader).
        const string setsid = "/usr/bin/setsid";
        start.FileName = File.Exists(setsid) ? setsid : DotnetPath();
        if (start.FileName == setsid) start.ArgumentList.Add(DotnetPath());
        start.ArgumentList.Add(hostAssembly);
        start.ArgumentList.Add("--log");
        start.ArgumentList.Add(Path.Combine(runtimeDirectory, "host.log"));
        start.Environment["KCOPYD_RUNTIME_DIR"] = runtimeDirectory;
        start.Environment["MALLOC_ARENA_MAX"] = "2"; // as the host's own MallocArenas, from the first thread on
        using var host = Process.Start(start);
        if (host == null) return "the process did not start.";
        host.StandardInput.Close();
        var errors = host.StandardError.ReadToEndAsync();
        var line = host.StandardOutput.ReadLineAsync();
        var waited = Stopwatch.StartNew();
        while (!line.Wait(100))
        {
            if (listening()) return null;
            if (waited.Elapsed > ListenTimeout)
                return $"it did not listen within {ListenTimeout.TotalSeconds:0} s (pid {host.Id}; a hung device while it assembles its mirrors?).";
        }
        if (line.Result?.StartsWith("Listening on ", StringComparison.Ordinal) == true) return null;
        host.WaitForExit(5000);
        errors.Wait(1000);
        string said = errors.IsCompletedSuccessfully ? errors.Result.Trim() : "";
        return said.Length > 0 ? said : $"it exited with code {(host.HasExited ? host.ExitCode : -1)}.";
    }

    /// <summary>The dotnet that runs this pwsh (the host needs a runtime, and this one is known to be there).</summary>
    private static string DotnetPath()
    {
        string root = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        string dotnet = Path.Combine(root, "dotnet");
        return File.Exists(dotnet) ? dotnet : "dotnet";
    }
}
