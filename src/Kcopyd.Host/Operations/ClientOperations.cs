using Kcopyd.Engine;
using Kcopyd.Engine.Copy;
using Kcopyd.Host.Registry;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Operations;

/// <summary>New-, Get-, Set- and Remove-CopyClient: the host's copy clients, each isolated from the others.</summary>
internal sealed class ClientOperations(HostRegistry registry)
{
    /// <summary>How long Remove-CopyClient -Force waits for the jobs it stopped; a job on a hung device keeps its client alive.</summary>
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(5);

    public CopyClientInfo? New(OperationContext context, NewClientRequest r)
    {
        var defaults = new CopyClientOptions();
        var options = defaults with
        {
            Name = r.Name,
            PageCount = r.PageCount ?? defaults.PageCount,
            SubJobSizeBytes = r.SubJobSize ?? Math.Min(defaults.SubJobSizeBytes, (r.PageCount ?? defaults.PageCount) * defaults.PageSizeBytes),
        };
        CheckName(r.Name);
        CheckThrottle(r.BytesPerSecond, r.DutyCyclePercent);
        if (registry.Clients.Exists(r.Name)) throw ClientTable.AlreadyExists(r.Name); // before the prompt; Create checks again
        long poolBytes = (long)options.PageCount * options.PageSizeBytes;
        if (!context.ShouldProcess(r.Name, $"Create a copy client with {options.PageCount} pages ({poolBytes >> 20} MiB, allocated now)")) return null;
        var client = registry.Clients.Create(options);
        client.Throttle.BytesPerSecond = r.BytesPerSecond;
        client.Throttle.DutyCyclePercent = r.DutyCyclePercent;
        context.WriteVerbose($"Client '{client.Name}': {options.PageCount} pages of {options.PageSizeBytes} bytes, sub-jobs of {options.SubJobSizeBytes} bytes, {options.SubJobsInFlight} in flight per job, I/O depth {options.IoDepth}.");
        return Info(client);
    }

    public CopyClientInfo[] Get() => registry.Clients.All.Select(Info).ToArray();

    public CopyClientInfo? Set(OperationContext context, ClientChange change)
    {
        var client = registry.Clients.Get(change.Name);
        CheckThrottle(change.BytesPerSecond ?? 0, change.DutyCyclePercent ?? 100);
        var what = new List<string>();
        if (change.BytesPerSecond is { } rate) what.Add(rate == 0 ? "no bandwidth limit" : $"at most {rate} bytes per second");
        if (change.DutyCyclePercent is { } percent) what.Add($"I/O in flight at most {percent}% of the time");
        if (what.Count == 0 || !context.ShouldProcess(client.Name, $"Throttle the copy client: {string.Join(", ", what)}")) return what.Count == 0 ? Info(client) : null;
        if (change.BytesPerSecond is { } newRate) client.Throttle.BytesPerSecond = newRate;
        if (change.DutyCyclePercent is { } newPercent) client.Throttle.DutyCyclePercent = newPercent;
        return Info(client);
    }

    /// <summary>
    /// Refused while the client has jobs, unless forced: then they are stopped and waited for (bounded) before its
    /// pages are freed. A job stuck on a hung device keeps them: the client is gone from the list, freed when it ends.
    /// </summary>
    public CopyClientInfo? Remove(OperationContext context, string name, bool force)
    {
        var client = registry.Clients.Get(name);
        ClientTable.RefuseDefault(client.Name);
        var jobs = registry.Jobs.Running.Where(j => j.Client.Equals(client.Name, StringComparison.OrdinalIgnoreCase) && j.State is CopyJobState.Queued or CopyJobState.Running or CopyJobState.Stopping).ToArray();
        if (jobs.Length > 0 && !force)
            throw new KcopydException("ClientInUse", KcopydErrorKind.ResourceBusy,
                $"Copy client '{client.Name}' has {jobs.Length} job(s) running ({string.Join(", ", jobs.Select(j => j.Id))}): wait for them (Wait-CopyJob), or use -Force to stop them.", client.Name);
        string action = jobs.Length > 0 ? $"Stop its {jobs.Length} job(s) and remove the copy client" : "Remove the copy client";
        if (!context.ShouldProcess(client.Name, action)) return null;
        var info = Info(registry.Clients.Take(client.Name));
        foreach (var job in jobs) job.Stop();
        if (Task.WhenAll(jobs.Select(j => j.WaitAsync())).Wait(StopTimeout))
            client.Dispose();
        else
        {
            var stuck = jobs.Where(j => !j.WaitAsync().IsCompleted).ToArray();
            context.WriteWarning($"Copy client '{client.Name}' is removed, but job(s) {string.Join(", ", stuck.Select(j => j.Id))} are Stopping with " +
                                 $"{stuck.Sum(j => j.IoInFlight)} I/O request(s) that have not returned after {StopTimeout.TotalSeconds:0} s (a hung device?); " +
                                 "the client's pages are freed when they do.");
            Task.WhenAll(jobs.Select(j => j.WaitAsync())).ContinueWith(_ => client.Dispose(), TaskScheduler.Default);
        }
        return info;
    }

    private static void CheckName(string name)
    {
        // A name shows in thread names (kcopyd/NAME), tables and job records: a plain word, as mirror names are.
        if (name.Length is 0 or > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            throw new KcopydException("InvalidClientName", KcopydErrorKind.InvalidArgument,
                $"A client's name is 1 to 64 letters, digits, '-', '_' or '.', not '{name}'.", name);
    }

    private static void CheckThrottle(long bytesPerSecond, int dutyCyclePercent)
    {
        if (bytesPerSecond < 0)
            throw new KcopydException("InvalidRate", KcopydErrorKind.InvalidArgument, $"-BytesPerSecond is 0 (unlimited) or positive, not {bytesPerSecond}.", bytesPerSecond);
        if (dutyCyclePercent is < 1 or > 100)
            throw new KcopydException("InvalidRate", KcopydErrorKind.InvalidArgument, $"-DutyCyclePercent is 1 to 100, not {dutyCyclePercent}.", dutyCyclePercent);
    }

    private static CopyClientInfo Info(CopyClient client) => new()
    {
        Name = client.Name,
        PageCount = client.PageCount,
        FreePages = client.FreePages,
        PageSize = client.Options.PageSizeBytes,
        SubJobSize = client.Options.SubJobSizeBytes,
        SubJobsInFlight = client.Options.SubJobsInFlight,
        ActiveJobs = client.ActiveJobs,
        BytesPerSecond = client.Throttle.BytesPerSecond,
        DutyCyclePercent = client.Throttle.DutyCyclePercent,
        IoBackend = client.IoBackend,
    };
}
