using System.Collections.Concurrent;
using System.Management.Automation;
using Kcopyd.Engine;
using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Session;

/// <summary>
/// What the module keeps for the life of the process: named copy clients, the jobs started on them, and the
/// mirror devices with the legs opened for them. Removing the module stops and frees all of it.
/// </summary>
public static class KcopydSession
{
    public const string DefaultClientName = "default";

    /// <summary>A mirror and the leg devices the module opened for it (which it closes after the mirror).</summary>
    private sealed record MirrorEntry(MirrorDevice Mirror, List<IBlockDevice> OpenedLegs);

    private static readonly ConcurrentDictionary<string, CopyClient> s_clients = new(StringComparer.OrdinalIgnoreCase);
    private static readonly ConcurrentDictionary<long, CopyJob> s_jobs = new();
    private static readonly ConcurrentDictionary<string, MirrorEntry> s_mirrors = new(StringComparer.OrdinalIgnoreCase);
    private static readonly object s_mirrorsLock = new();

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

    public static IEnumerable<MirrorDevice> Mirrors => s_mirrors.Values.Select(e => e.Mirror).OrderBy(m => m.Id);

    public static bool MirrorExists(string name) => s_mirrors.ContainsKey(name);

    public static MirrorDevice GetMirror(string name)
        => s_mirrors.TryGetValue(name, out var entry)
            ? entry.Mirror
            : throw new KcopydException("MirrorNotFound", KcopydErrorKind.NotFound, $"There is no mirror device named '{name}'.", name);

    /// <summary>Keeps a new mirror, with the legs opened for it that must be closed after it.</summary>
    public static void AddMirror(MirrorDevice mirror, IReadOnlyList<IBlockDevice> openedLegs)
    {
        if (!s_mirrors.TryAdd(mirror.Name, new MirrorEntry(mirror, [.. openedLegs])))
            throw new KcopydException("MirrorExists", KcopydErrorKind.AlreadyExists, $"A mirror device named '{mirror.Name}' exists already.", mirror.Name);
    }

    /// <summary>A device opened for a leg that joined the mirror later (Add-MirrorLeg, Repair-MirrorDevice -NewLeg).</summary>
    public static void AdoptLeg(string mirrorName, IBlockDevice device)
    {
        var entry = s_mirrors[mirrorName];
        lock (entry.OpenedLegs) entry.OpenedLegs.Add(device);
    }

    /// <summary>Closes the device of a leg that left the mirror, if the module opened it (a mirror leg stays).</summary>
    public static void CloseLeg(string mirrorName, IBlockDevice device)
    {
        var entry = s_mirrors[mirrorName];
        lock (entry.OpenedLegs)
        {
            if (!entry.OpenedLegs.Remove(device)) return;
        }
        device.Dispose();
    }

    /// <summary>How long removing a mirror waits for its I/O in flight; after that it finishes closing on its own.</summary>
    public static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Flushes and stops a mirror, then closes the legs opened for it. A mirror that is a leg of another, or that
    /// a running copy uses (unless forced), is refused. False when its I/O had not all returned within
    /// <see cref="CloseTimeout"/>: it is gone from the session, and lets go of its legs once that I/O ends.
    /// </summary>
    public static bool RemoveMirror(string name, bool force = false)
    {
        lock (s_mirrorsLock)
        {
            var mirror = GetMirror(name);
            // A copy running into or out of the mirror would fail half-way with EIO: say so first.
            var busy = s_jobs.Values.Where(j => j.State is CopyJobState.Queued or CopyJobState.Running
                && (j.Source == mirror.Name || j.Destination.Contains(mirror.Name))).ToArray();
            if (busy.Length > 0 && !force)
                throw new KcopydException("MirrorInUse", KcopydErrorKind.ResourceBusy,
                    $"Mirror '{name}' is used by running copy job(s) {string.Join(", ", busy.Select(j => j.Id))}; wait for them, or use -Force to stop them first.", name);
            foreach (var job in busy) job.Stop();
            // Bounded: a job stuck on a hung leg ends when the mirror's I/O does.
            Task.WhenAll(busy.Select(j => j.WaitAsync())).Wait(CloseTimeout);
            var user = s_mirrors.Values.FirstOrDefault(e => e.Mirror.Legs.Any(l => ReferenceEquals(l.Device, mirror)));
            if (user != null)
                throw new KcopydException("MirrorInUse", KcopydErrorKind.ResourceBusy,
                    $"Mirror '{name}' is a leg of mirror '{user.Mirror.Name}'; remove that one first.", name);
            s_mirrors.TryRemove(mirror.Name, out var entry);
            return Close(entry!);
        }
    }

    /// <summary>Stops running jobs, waits for them, removes mirrors top-down, and frees every client.</summary>
    internal static void Close()
    {
        foreach (var job in s_jobs.Values) job.Stop();
        // Bounded, like every wait on a device: a job stuck on a hung disk must not keep pwsh from exiting.
        bool jobsEnded = Task.WhenAll(s_jobs.Values.Select(j => j.WaitAsync())).Wait(CloseTimeout);
        lock (s_mirrorsLock)
        {
            while (!s_mirrors.IsEmpty)
            {
                // A mirror stacked on another goes first, so no mirror is closed under a live one.
                var top = s_mirrors.Values.First(e => !s_mirrors.Values.Any(o => o.Mirror.Legs.Any(l => ReferenceEquals(l.Device, e.Mirror))));
                s_mirrors.TryRemove(top.Mirror.Name, out _);
                Close(top);
            }
        }
        // A client with a job still on a hung device cannot be freed (its pages are under that I/O): leave it.
        if (jobsEnded)
            foreach (var client in s_clients.Values) client.Dispose();
        s_clients.Clear();
        s_jobs.Clear();
    }

    /// <summary>Closes a mirror (bounded), then the legs opened for it: at once, or when its late I/O has ended.</summary>
    private static bool Close(MirrorEntry entry)
        => entry.Mirror.Close(CloseTimeout, () =>
        {
            foreach (var leg in entry.OpenedLegs) leg.Dispose();
        });
}

/// <summary>Frees the session when the module is removed.</summary>
public sealed class ModuleCleanup : IModuleAssemblyCleanup
{
    public void OnRemove(PSModuleInfo psModuleInfo) => KcopydSession.Close();
}
