using System.Collections.Concurrent;
using Kcopyd.Engine;
using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;
using Kcopyd.Host.State;

namespace Kcopyd.Host.Registry;

/// <summary>
/// The host's mirrors, each with the leg devices opened for it and its definition in the state directory,
/// rewritten whenever its legs or settings change so the next start assembles it as it is now.
/// </summary>
internal sealed class MirrorTable(StateDirectory? state, JobTable jobs, Exports.ExportTable exports, TextWriter log)
{
    /// <summary>A mirror, the leg devices the host opened for it (closed after it), how it was made, and where it is published.</summary>
    private sealed record Entry(MirrorDevice Mirror, List<IBlockDevice> OpenedLegs, bool Force, List<ExportDefinition> Exports);

    /// <summary>
    /// How long removing a mirror waits, all told, for the jobs it stops, its exports and its I/O in flight; after
    /// that it finishes closing on its own thread (a hung leg must not hang the admin).
    /// </summary>
    public static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The part of <see cref="CloseTimeout"/> the stopped jobs get: they end with the mirror's I/O anyway.</summary>
    private static readonly TimeSpan JobStopWait = TimeSpan.FromSeconds(2);

    /// <summary>The close itself always gets this much, however long the steps before it took.</summary>
    private static readonly TimeSpan CloseFloor = TimeSpan.FromMilliseconds(500);

    private readonly ConcurrentDictionary<string, Entry> _mirrors = new(StringComparer.OrdinalIgnoreCase);
    private readonly object _lock = new();

    public int Count => _mirrors.Count;

    public IEnumerable<MirrorDevice> All => _mirrors.Values.Select(e => e.Mirror).OrderBy(m => m.Id).ToArray();

    public bool Exists(string name) => _mirrors.ContainsKey(name);

    public MirrorDevice Get(string name)
        => _mirrors.TryGetValue(name, out var entry)
            ? entry.Mirror
            : throw new KcopydException("MirrorNotFound", KcopydErrorKind.NotFound, $"There is no mirror device named '{name}'.", name);

    /// <summary>Keeps a new mirror with the legs opened for it, and writes its definition.</summary>
    /// <param name="exports">The publications an assembled mirror's definition keeps (they are served again after it is added).</param>
    public void Add(MirrorDevice mirror, IReadOnlyList<IBlockDevice> openedLegs, bool force, bool persist = true, IEnumerable<ExportDefinition>? exports = null)
    {
        var entry = new Entry(mirror, [.. openedLegs], force, [.. exports ?? []]);
        if (!_mirrors.TryAdd(mirror.Name, entry))
            throw new KcopydException("MirrorExists", KcopydErrorKind.AlreadyExists, $"A mirror device named '{mirror.Name}' exists already.", mirror.Name);
        if (persist) Save(mirror.Name);
    }

    /// <summary>A device opened for a leg that joined the mirror later (Add-MirrorLeg, Repair-MirrorDevice -NewLeg).</summary>
    public void AdoptLeg(string mirrorName, IBlockDevice device)
    {
        var entry = _mirrors[mirrorName];
        lock (entry.OpenedLegs) entry.OpenedLegs.Add(device);
    }

    /// <summary>Closes the device of a leg that left the mirror, if the host opened it (a mirror leg stays).</summary>
    public void CloseLeg(string mirrorName, IBlockDevice device)
    {
        var entry = _mirrors[mirrorName];
        lock (entry.OpenedLegs)
        {
            if (!entry.OpenedLegs.Remove(device)) return;
        }
        device.Dispose();
    }

    /// <summary>Where the mirror's definition says it is published (served or not).</summary>
    public ExportDefinition[] ExportsOf(string name)
    {
        var entry = _mirrors[Get(name).Name];
        lock (entry.Exports) return [.. entry.Exports];
    }

    /// <summary>Keeps a publication in the definition, so a restarted host serves it again.</summary>
    public void AddExport(string name, ExportDefinition export)
    {
        var entry = _mirrors[Get(name).Name];
        lock (entry.Exports) entry.Exports.Add(export);
        Save(name);
    }

    /// <summary>Forgets every publication of the mirror (Unpublish-MirrorDevice).</summary>
    public void RemoveExports(string name)
    {
        var entry = _mirrors[Get(name).Name];
        lock (entry.Exports)
        {
            if (entry.Exports.Count == 0) return;
            entry.Exports.Clear();
        }
        Save(name);
    }

    /// <summary>Writes the mirror's definition as it is now: legs in order, by path and identity, and its settings.</summary>
    public void Save(string name)
    {
        if (state == null || !_mirrors.TryGetValue(name, out var entry)) return;
        var mirror = entry.Mirror;
        var status = mirror.GetStatus();
        state.SaveMirror(new MirrorDefinition
        {
            Name = mirror.Name,
            Legs = mirror.Legs.Select(l => new MirrorLegDefinition
            {
                Path = l.Device is MirrorDevice m ? m.Name : l.Device.Name,
                IsMirror = l.Device is MirrorDevice,
                StableId = l.StableId,
            }).ToArray(),
            RegionSizeBytes = mirror.RegionSizeBytes,
            LogPath = status.LogPath,
            RequestPoolSize = status.RequestPoolSize,
            RecoveryBytesPerSecond = mirror.RecoveryThrottle.BytesPerSecond,
            LegTimeoutSeconds = (int)mirror.LegTimeout.TotalSeconds,
            Force = entry.Force,
            Created = DateTimeOffset.Now,
            Exports = ExportsOf(name),
        });
    }

    /// <summary>
    /// Flushes and stops a mirror, then closes the legs opened for it, and forgets its definition. A mirror that
    /// is a leg of another, or that a running copy or an NBD client uses (unless forced), is refused; its exports end. False when its I/O had not
    /// all returned within <see cref="CloseTimeout"/>: it is gone, and lets go of its legs once that I/O ends.
    /// </summary>
    public bool Remove(string name, bool force = false)
    {
        lock (_lock)
        {
            var deadline = new Deadline(CloseTimeout);
            var mirror = Get(name);
            // A copy running into or out of the mirror would fail half-way with EIO: say so first.
            var busy = jobs.Running.Where(j => j.State is CopyJobState.Queued or CopyJobState.Running or CopyJobState.Stopping
                && (j.Source == mirror.Name || j.Destination.Contains(mirror.Name))).ToArray();
            if (busy.Length > 0 && !force)
                throw new KcopydException("MirrorInUse", KcopydErrorKind.ResourceBusy,
                    $"Mirror '{name}' is used by running copy job(s) {string.Join(", ", busy.Select(j => j.Id))}; wait for them, or use -Force to stop them first.", name);
            foreach (var job in busy) job.Stop();
            // Bounded: a job stuck on a hung leg ends when the mirror's I/O does.
            Task.WhenAll(busy.Select(j => j.WaitAsync())).Wait(deadline.AtMost(JobStopWait));
            var user = UserOf(mirror);
            if (user != null)
                throw new KcopydException("MirrorInUse", KcopydErrorKind.ResourceBusy,
                    $"Mirror '{name}' is a leg of mirror '{user.Name}'; remove that one first.", name);
            var published = exports.Of(mirror.Name);
            if (!force) Operations.ExportOperations.RefuseIfInUse(mirror.Name, published, "Remove-MirrorDevice -Force");
            foreach (var export in published)
            {
                exports.Remove(export);
                export.StopAsync().Wait(deadline.Remaining());
            }
            _mirrors.TryRemove(mirror.Name, out var entry);
            state?.DeleteMirror(mirror.Name);
            return Close(entry!, deadline.Remaining(CloseFloor));
        }
    }

    /// <summary>The mirror that has this one as a leg, if any.</summary>
    public MirrorDevice? UserOf(MirrorDevice mirror)
        => _mirrors.Values.Select(e => e.Mirror).FirstOrDefault(m => m.Legs.Any(l => ReferenceEquals(l.Device, mirror)));

    /// <summary>Closes every mirror, stacked ones first, keeping their definitions: the next start assembles them again.</summary>
    public void CloseAll(Deadline deadline)
    {
        lock (_lock)
        {
            while (!_mirrors.IsEmpty)
            {
                // A mirror stacked on another goes first, so no mirror is closed under a live one.
                var top = _mirrors.Values.First(e => UserOf(e.Mirror) == null);
                _mirrors.TryRemove(top.Mirror.Name, out _);
                var timeout = deadline.Remaining(CloseFloor);
                if (!Close(top, timeout))
                    log.WriteLine($"Mirror '{top.Mirror.Name}' is closing, but I/O to a leg has not returned after {timeout.TotalSeconds:0.#} s; " +
                                  "its legs and log are let go once it does, or when the host exits.");
            }
        }
    }

    /// <summary>Closes a mirror (bounded), then the legs opened for it: at once, or when its late I/O has ended.</summary>
    private static bool Close(Entry entry, TimeSpan timeout)
        => entry.Mirror.Close(timeout, () =>
        {
            foreach (var leg in entry.OpenedLegs) leg.Dispose();
        });
}
