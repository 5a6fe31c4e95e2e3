using Kcopyd.Engine;
using Kcopyd.Host.Registry;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Operations;

/// <summary>Get-, Set- and Stop-KcopydHost: who the host is and what it holds, its settings, and its end.</summary>
internal sealed class HostOperations(HostRegistry registry, string socketPath)
{
    // When the host began serving (the process's own start time is computed from the boot time, which drifts).
    private readonly DateTimeOffset _startTime = DateTimeOffset.Now;

    public HostInfo Info() => new()
    {
        ProtocolVersion = ControlProtocol.Version,
        ProcessId = Environment.ProcessId,
        Version = typeof(HostOperations).Assembly.GetName().Version?.ToString(3) ?? "0.0.0",
        StartTime = _startTime,
        SocketPath = socketPath,
        StateDirectory = registry.State?.Path ?? "",
        Clients = registry.Clients.Count,
        Jobs = registry.Jobs.Count,
        RunningJobs = registry.Jobs.RunningCount,
        Mirrors = registry.Mirrors.Count,
        Unassembled = [.. registry.Unassembled],
        ExportProblems = Snapshot(registry.ExportProblems),
        WorkingSetBytes = Environment.WorkingSet,
        ManagedHeapBytes = GC.GetTotalMemory(forceFullCollection: false),
        IoBackend = registry.Clients.DefaultIoBackend ?? "",
        JobHistoryCount = registry.Jobs.HistoryCount,
        JobHistoryMaxAge = registry.Jobs.HistoryMaxAge,
    };

    private static ExportProblem[] Snapshot(List<ExportProblem> problems)
    {
        lock (problems) return [.. problems];
    }

    /// <summary>
    /// Refused while jobs run or mirrors are open, unless forced; then the host stops its jobs, closes its mirrors
    /// (their definitions stay, so the next start assembles them) and exits, just after this call is answered.
    /// </summary>
    public bool Stop(bool force)
    {
        int running = registry.Jobs.RunningCount, mirrors = registry.Mirrors.Count;
        if (!force && (running > 0 || mirrors > 0))
            throw new KcopydException("HostInUse", KcopydErrorKind.ResourceBusy,
                $"The Kcopyd host has {running} running copy job(s) and {mirrors} open mirror(s): wait for the jobs or remove the mirrors, " +
                "or use -Force (jobs are stopped; mirrors are closed cleanly and assembled again at the next start).", Environment.ProcessId);
        registry.Log.WriteLine($"Stopping at a client's request ({running} running job(s), {mirrors} mirror(s)).");
        // Answer first: the main loop closes everything once the reply is on its way.
        _ = Task.Delay(100).ContinueWith(_ => registry.Stopping.Cancel(), TaskScheduler.Default);
        return true;
    }

    public HostInfo Set(OperationContext context, HostSettingsChange change)
    {
        if (change.JobHistoryCount is < 0)
            throw new KcopydException("InvalidSetting", KcopydErrorKind.InvalidArgument, "JobHistoryCount cannot be negative.");
        if (change.JobHistoryMaxAge is { } age && age < TimeSpan.Zero)
            throw new KcopydException("InvalidSetting", KcopydErrorKind.InvalidArgument, "JobHistoryMaxAge cannot be negative.");
        if (!context.ShouldProcess($"Kcopyd host {Environment.ProcessId}", "Change how long finished copy jobs stay listed")) return Info();
        if (change.JobHistoryCount is { } count) registry.Jobs.HistoryCount = count;
        if (change.JobHistoryMaxAge is { } maxAge) registry.Jobs.HistoryMaxAge = registry.InternalJobs.HistoryMaxAge = maxAge;
        registry.Jobs.Prune();
        registry.InternalJobs.Prune();
        registry.State?.SaveSettings(new State.HostSettings { JobHistoryCount = registry.Jobs.HistoryCount, JobHistoryMaxAge = registry.Jobs.HistoryMaxAge });
        return Info();
    }
}
