using System.Collections.Concurrent;
using System.Management.Automation;
using Kcopyd.Engine.Copy;

namespace Kcopyd.Session;

/// <summary>
/// What the module keeps for the life of the process: named copy clients and the jobs started on them.
/// Removing the module waits for running jobs and frees every client.
/// </summary>
public static class KcopydSession
{
    public const string DefaultClientName = "default";

    private static readonly ConcurrentDictionary<string, CopyClient> s_clients = new(StringComparer.OrdinalIgnoreCase);
    private static readonly ConcurrentDictionary<long, CopyJob> s_jobs = new();

    /// <summary>The named client; the default one is created on first use.</summary>
    public static CopyClient GetClient(string? name)
    {
        name = string.IsNullOrEmpty(name) ? DefaultClientName : name;
        if (s_clients.TryGetValue(name, out var client)) return client;
        if (!name.Equals(DefaultClientName, StringComparison.OrdinalIgnoreCase))
            throw new ItemNotFoundException($"There is no copy client named '{name}'.");
        return s_clients.GetOrAdd(DefaultClientName, _ => new CopyClient(new CopyClientOptions { Name = DefaultClientName }));
    }

    public static void AddJob(CopyJob job) => s_jobs[job.Id] = job;

    public static IEnumerable<CopyJob> Jobs => s_jobs.Values.OrderBy(j => j.Id);

    public static CopyJob? FindJob(long id) => s_jobs.TryGetValue(id, out var job) ? job : null;

    /// <summary>Stops running jobs, waits for them, and frees every client.</summary>
    internal static void Close()
    {
        foreach (var job in s_jobs.Values) job.Stop();
        foreach (var client in s_clients.Values) client.Dispose();
        s_clients.Clear();
        s_jobs.Clear();
    }
}

/// <summary>Frees the session when the module is removed.</summary>
public sealed class ModuleCleanup : IModuleAssemblyCleanup
{
    public void OnRemove(PSModuleInfo psModuleInfo) => KcopydSession.Close();
}
