using Kcopyd.Host.State;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Registry;

/// <summary>Everything the host holds: copy clients, jobs, mirrors, the state directory, and what failed to assemble.</summary>
internal sealed class HostRegistry
{
    public HostRegistry(StateDirectory? state, TextWriter log)
    {
        State = state;
        Log = log;
        Mirrors = new MirrorTable(state, Jobs, Exports, log);
        if (state != null)
        {
            var settings = state.LoadSettings(out string? error);
            if (error != null) log.WriteLine($"The host's settings were not read, defaults apply: {error}");
            Jobs.HistoryCount = settings.JobHistoryCount;
            Jobs.HistoryMaxAge = settings.JobHistoryMaxAge;
            InternalJobs.HistoryMaxAge = settings.JobHistoryMaxAge;
        }
    }

    public StateDirectory? State { get; }

    public TextWriter Log { get; }

    public ClientTable Clients { get; } = new();

    public JobTable Jobs { get; } = new();

    /// <summary>
    /// The jobs the host runs for itself (mirror recovery copies, negative ids), apart from the admin's: Get-CopyJob lists
    /// them only with -IncludeInternal, and a resync of thousands of regions keeps only the last of them.
    /// </summary>
    public JobTable InternalJobs { get; } = new() { HistoryCount = InternalHistoryCount };

    public const int InternalHistoryCount = 100;

    /// <summary>The table a job's id belongs to.</summary>
    public JobTable JobsOf(long id) => id < 0 ? InternalJobs : Jobs;

    public MirrorTable Mirrors { get; }

    public Exports.ExportTable Exports { get; } = new();

    /// <summary>Definitions the last assembly could not bring up, and why.</summary>
    public List<UnassembledMirror> Unassembled { get; } = [];

    /// <summary>Publications the host could not serve again at its start, and stale block devices it could not remove.</summary>
    public List<ExportProblem> ExportProblems { get; } = [];

    /// <summary>Raised by StopHost: the host's main loop ends, closing everything.</summary>
    public CancellationTokenSource Stopping { get; } = new();

    /// <summary>How long stopping the host waits, all told, for its jobs and mirrors before it exits anyway.</summary>
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Stops running jobs, ends exports, closes mirrors top-down keeping their definitions, frees the clients: within
    /// <see cref="StopTimeout"/> for the jobs and mirrors, however long a hung device holds their I/O. What has not
    /// returned by then is said in the log; the host exits with it still in the kernel (see Program.cs).
    /// </summary>
    public void Close()
    {
        var deadline = new Deadline(StopTimeout);
        var running = Jobs.Running.ToArray();
        foreach (var job in running) job.Stop();
        // Bounded, like every wait on a device: a job stuck on a hung disk must not keep the host from exiting.
        bool jobsEnded = Task.WhenAll(running.Select(j => j.WaitAsync())).Wait(deadline.AtMost(TimeSpan.FromSeconds(2)));
        foreach (var job in running.Where(j => !j.WaitAsync().IsCompleted))
            Log.WriteLine($"Copy job {job.Id} is Stopping with {job.IoInFlight} I/O request(s) that have not returned (a hung device?); " +
                          "the host exits without freeing its pages, which the kernel may still write into.");
        Exports.StopAll(); // block devices detached and clients let go before their mirrors close
        Mirrors.CloseAll(deadline);
        Clients.DisposeAll(jobsEnded);
    }
}
