using Kcopyd.Host;
using Kcopyd.Host.Operations;
using Kcopyd.Host.Registry;
using Kcopyd.Host.State;

// kcopyd-host [--log FILE] | --systemd-unit
// Runs until SIGTERM, SIGINT or Stop-KcopydHost. Its one line on stdout tells whoever started it that it listens;
// with --log (how a cmdlet starts it) its output then goes to that file, so it holds nothing of its starter's.
if (args is ["--systemd-unit"])
{
    Console.Out.Write(SystemdUnit.Text());
    return 0;
}
string? logPath = args is ["--log", var file] ? file : null;
MallocArenas.Limit();
// Calls that ask the cmdlet back hold a pool thread until it answers: 64 of them at once must not wait for the
// pool to grow (it adds about one thread a second), which would stall the answers themselves.
ThreadPool.GetMinThreads(out int workers, out int completions);
ThreadPool.SetMinThreads(Math.Max(workers, 64), completions);
var stamped = new TimestampedWriter(Console.Error);
var log = TextWriter.Synchronized(stamped);
try
{
    using var state = WhileLocked(() => StateDirectory.Open(StateDirectory.Resolve()));
    var registry = new HostRegistry(state, log);
    using var stopping = CancellationTokenSource.CreateLinkedTokenSource(registry.Stopping.Token);
    using var onTerm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
        System.Runtime.InteropServices.PosixSignal.SIGTERM, context => { context.Cancel = true; stopping.Cancel(); });
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stopping.Cancel(); };
    await using (var server = WhileLocked(() => ControlServer.Start(RuntimeDirectory.Resolve(), log, registry)))
    {
        // Mirrors come up before the first call is served, so the first Get-MirrorDevice already lists them.
        MirrorAssembler.AssembleAll(registry);
        // and are served again where they were published, after what a killed host left there is cleaned up.
        var exports = new ExportOperations(registry, Path.GetDirectoryName(server.SocketPath)!);
        exports.RemoveStaleAttachments();
        exports.RepublishAll();
        server.Ready();
        Console.Out.WriteLine($"Listening on {server.SocketPath}");
        Console.Out.Flush();
        if (logPath != null && HostLogFile.TakeOver(logPath) is { } logFile) stamped.Inner = logFile;
        log.WriteLine($"Kcopyd host {Environment.ProcessId} listening on {server.SocketPath}, state in {state.Path}.");
        try { await Task.Delay(Timeout.Infinite, stopping.Token); }
        catch (OperationCanceledException) { }
        log.WriteLine("Stopping: jobs are stopped, mirrors closed (their definitions stay).");
        registry.Close();
    }
    return 0;
}
catch (HostStartException e)
{
    Console.Error.WriteLine($"kcopyd-host: {e.Message}");
    return 1;
}

// A host killed a moment ago (SIGKILL, then restarted by the next cmdlet or by systemd) holds its locks until its
// last I/O has ended: a few seconds are waited out; a live host's lock is still a refusal after them.
static T WhileLocked<T>(Func<T> take)
{
    var deadline = DateTime.UtcNow.AddSeconds(10);
    while (true)
    {
        try { return take(); }
        catch (HostStartException e) when (e.LockHeld && DateTime.UtcNow < deadline) { Thread.Sleep(200); }
    }
}
