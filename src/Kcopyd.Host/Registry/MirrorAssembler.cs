using Kcopyd.Engine;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;
using Kcopyd.Host.Operations;
using Kcopyd.Host.State;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Registry;

/// <summary>
/// Brings up every mirror the state directory defines when the host starts, as mdadm --assemble --scan: with a
/// persistent log only the regions it marks are resynced, with the in-memory log the whole mirror. A definition
/// that cannot be assembled (a leg missing or now another device) is reported and kept, never dropped.
/// </summary>
internal static class MirrorAssembler
{
    public static void AssembleAll(HostRegistry registry)
    {
        if (registry.State == null) return;
        var pending = new List<MirrorDefinition>();
        foreach (var stored in registry.State.LoadMirrors())
        {
            if (stored.Definition != null) pending.Add(stored.Definition);
            else Report(registry, Path.GetFileNameWithoutExtension(stored.FileName), stored.Error ?? "its definition cannot be read");
        }
        // A stacked mirror comes up after the mirrors it has as legs, whatever the order of their names.
        while (pending.Count > 0)
        {
            var ready = pending.FirstOrDefault(d => d.Legs.Where(l => l.IsMirror).All(l => !pending.Any(p => p.Name.Equals(l.Path, StringComparison.OrdinalIgnoreCase))));
            if (ready == null)
            {
                foreach (var d in pending) Report(registry, d.Name, "its legs include mirrors that include it (a loop in the definitions)");
                return;
            }
            pending.Remove(ready);
            try
            {
                AssembleWhenFree(registry, ready);
                registry.Log.WriteLine($"Assembled mirror '{ready.Name}' from its definition.");
            }
            catch (KcopydException e)
            {
                Report(registry, ready.Name, e.Message);
            }
        }
    }

    /// <summary>Refusals that a host killed a moment ago causes while its last I/O drains; waited out for a few seconds.</summary>
    private static readonly string[] InUse = ["DeviceInUse", "LegInUse", "LogInUse"];

    private static void AssembleWhenFree(HostRegistry registry, MirrorDefinition definition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            try
            {
                Assemble(registry, definition);
                return;
            }
            catch (KcopydException e) when (InUse.Contains(e.ErrorId) && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(200);
            }
        }
    }

    private static void Assemble(HostRegistry registry, MirrorDefinition definition)
    {
        var opened = new List<IBlockDevice>();
        MirrorDevice? mirror = null;
        try
        {
            var legs = new List<IBlockDevice>();
            foreach (var leg in definition.Legs)
            {
                if (leg.IsMirror)
                {
                    legs.Add(registry.Mirrors.Exists(leg.Path)
                        ? registry.Mirrors.Get(leg.Path)
                        : throw new KcopydException("LegMissing", KcopydErrorKind.NotFound, $"its leg, mirror '{leg.Path}', is not assembled", leg.Path));
                    continue;
                }
                var device = BlockDevices.Open(leg.Path, DeviceOpenOptions.ReadWrite with { Exclusive = !definition.Force });
                opened.Add(device);
                // The log checks its legs' identities itself; the in-memory log has nobody else to.
                if (leg.StableId.Length > 0 && LegIdentity.Of(device) != leg.StableId)
                    throw new KcopydException("LegIdentityMismatch", KcopydErrorKind.InvalidArgument,
                        $"its leg '{leg.Path}' is now another device (it is {LegIdentity.Of(device)}, the mirror knew {leg.StableId})", leg.Path);
                legs.Add(device);
            }
            mirror = new MirrorDevice(legs, new MirrorOptions
            {
                Name = definition.Name,
                RegionSizeBytes = definition.RegionSizeBytes,
                LogPath = definition.LogPath,
                RequestPoolSize = definition.RequestPoolSize,
                RecoveryBytesPerSecond = definition.RecoveryBytesPerSecond,
                LegTimeout = definition.LegTimeoutSeconds is { } seconds ? TimeSpan.FromSeconds(Math.Clamp(seconds, 0, 86400)) : MirrorOptions.DefaultLegTimeout,
                InternalJobStarted = job => registry.InternalJobs.Add(job),
            });
            if (mirror.LogWasReused && mirror.FindSampledInSyncDifference() is { } differs)
                throw MirrorOperations.LogDoesNotFit(mirror, differs.Leg, differs.OffsetBytes);
            registry.Mirrors.Add(mirror, opened, definition.Force, persist: false, exports: definition.Exports ?? []);
        }
        catch
        {
            mirror?.Dispose();
            opened.ForEach(d => d.Dispose());
            throw;
        }
    }

    private static void Report(HostRegistry registry, string name, string reason)
    {
        reason = reason.TrimEnd('.'); // an exception's message ends in a stop; the warning and the log line add their own
        registry.Unassembled.Add(new UnassembledMirror { Name = name, Reason = reason });
        registry.Log.WriteLine($"Mirror '{name}' was not assembled: {reason}. Its definition is kept.");
    }
}
