using Kcopyd.Engine;
using Kcopyd.Engine.Mirror;
using Kcopyd.Host.Registry;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Operations;

/// <summary>Repair-MirrorDevice, Add-MirrorLeg, Remove-MirrorLeg and Test-MirrorDevice, run in the host.</summary>
internal sealed class MirrorRepairOperations(HostRegistry registry)
{
    private MirrorTable Mirrors => registry.Mirrors;

    /// <summary>Re-adds dead legs that answer again (mdadm --re-add). Null under -WhatIf (nothing changed, nothing output).</summary>
    public MirrorInfo? RepairMirror(OperationContext context, string name)
    {
        var mirror = Mirrors.Get(name);
        var dead = mirror.Legs.Where(l => l.Health is LegHealth.Dead or LegHealth.Hung).Select(l => l.Name).ToArray();
        if (dead.Length == 0)
        {
            context.WriteVerbose($"Mirror '{mirror.Name}' has no dead leg.");
            return MirrorOperations.Describe(registry, mirror);
        }
        if (!context.ShouldProcess(string.Join(", ", dead), $"Re-add to mirror '{mirror.Name}' and copy the regions written while they were out")) return null;
        foreach (var (leg, error) in mirror.ReAddDeadLegs())
        {
            if (error == null) context.WriteVerbose($"'{leg}' is back; its out-of-sync regions are being copied.");
            else context.WriteError(new KcopydException("LegStillFailing", KcopydErrorKind.DeviceError,
                $"'{leg}' stays dead: {error}. Replace it with -ReplaceLeg '{leg}' -NewLeg <device>.", leg));
        }
        Mirrors.Save(mirror.Name);
        return MirrorOperations.Describe(registry, mirror);
    }

    /// <summary>Rebuilds a leg onto a new device (lvconvert --replace). Null under -WhatIf.</summary>
    public MirrorInfo? ReplaceLeg(OperationContext context, string name, string oldLeg, DeviceRef newLeg, bool force)
    {
        var mirror = Mirrors.Get(name);
        // Before opening the new leg or ShouldProcess: a leg the mirror does not have is LegNotFound, under -WhatIf too.
        var old = mirror.FindLeg(oldLeg).Device;
        var devices = new DeviceScope(Mirrors, registry.Jobs);
        try
        {
            var device = devices.OpenForWrite(newLeg, force, asLeg: true);
            if (!force) LegChecks.RefuseIfHoldsData(device, "the new leg");
            if (!context.ShouldProcess(device.Name, $"Replace leg '{oldLeg}' of mirror '{mirror.Name}' and overwrite its bytes {CopyOperations.Span(0, mirror.SizeBytes)} with a full resync"))
            {
                devices.CloseAll();
                return null;
            }
            mirror.ReplaceLeg(oldLeg, device);
            foreach (var opened in devices.Opened) Mirrors.AdoptLeg(mirror.Name, opened);
            Mirrors.CloseLeg(mirror.Name, old);
            Mirrors.Save(mirror.Name);
            return MirrorOperations.Describe(registry, mirror);
        }
        catch
        {
            devices.CloseAll();
            throw;
        }
    }

    /// <summary>Adds a leg, resynced whole before it serves reads. Null under -WhatIf.</summary>
    public MirrorInfo? AddLeg(OperationContext context, string name, DeviceRef leg, bool force)
    {
        var devices = new DeviceScope(Mirrors, registry.Jobs);
        try
        {
            var mirror = Mirrors.Get(name);
            var device = devices.OpenForWrite(leg, force, asLeg: true);
            if (!force) LegChecks.RefuseIfHoldsData(device, "the new leg");
            if (!context.ShouldProcess(device.Name, $"Add to mirror '{mirror.Name}' and overwrite its bytes {CopyOperations.Span(0, mirror.SizeBytes)} with a full resync"))
            {
                devices.CloseAll();
                return null;
            }
            mirror.AddLeg(device);
            foreach (var opened in devices.Opened) Mirrors.AdoptLeg(mirror.Name, opened);
            Mirrors.Save(mirror.Name);
            return MirrorOperations.Describe(registry, mirror);
        }
        catch
        {
            devices.CloseAll();
            throw;
        }
    }

    /// <summary>Splits a leg off (lvconvert --splitmirrors). Null under -WhatIf.</summary>
    public MirrorInfo? RemoveLeg(OperationContext context, string name, string leg)
    {
        var mirror = Mirrors.Get(name);
        // Before ShouldProcess: -WhatIf on a leg the mirror does not have says so rather than what it would do.
        var device = mirror.FindLeg(leg).Device;
        if (!context.ShouldProcess(leg, $"Remove from mirror '{mirror.Name}'")) return null;
        bool consistent = mirror.RemoveLeg(leg);
        Mirrors.CloseLeg(mirror.Name, device);
        Mirrors.Save(mirror.Name);
        if (!consistent)
            context.WriteWarning($"'{leg}' was not alive and in sync when it left mirror '{mirror.Name}': it is not a consistent copy of the mirror.");
        return MirrorOperations.Describe(registry, mirror);
    }

    /// <summary>Compares the legs region by region (md's check); with repair, rewrites those that differ. Null under -WhatIf.</summary>
    public RegionMismatchInfo[]? TestMirror(OperationContext context, string name, bool repair)
    {
        var mirror = Mirrors.Get(name);
        // Only -Repair writes; a plain check runs under -WhatIf too, as it changes nothing.
        if (repair && !context.ShouldProcess(mirror.Name,
            $"Compare bytes {CopyOperations.Span(0, mirror.SizeBytes)} of the legs and rewrite the regions that differ from the default leg '{mirror.DefaultLeg.Name}'")) return null;
        var progress = new ProgressInfo { Activity = $"{(repair ? "Repairing" : "Checking")} mirror '{mirror.Name}'", Status = "Comparing legs" };
        int shown = -1;
        var found = mirror.Scrub(repair, region =>
        {
            int percent = (int)(100 * (region + 1) / mirror.RegionCount);
            if (percent == shown) return;
            shown = percent;
            progress.PercentComplete = percent;
            progress.Status = $"Region {region + 1} of {mirror.RegionCount}";
            context.WriteProgress(progress);
        }, context.Cancellation);
        progress.Completed = true;
        context.WriteProgress(progress);
        context.WriteVerbose($"Mirror '{mirror.Name}': {found.Count} of {mirror.RegionCount} regions differ between legs (regions out of sync were skipped; the recovery copies them).");
        if (found.Count > 0 && !repair)
            context.WriteWarning($"{found.Count} region(s) of mirror '{mirror.Name}' differ between legs; Test-MirrorDevice -Repair rewrites them from the default leg '{mirror.DefaultLeg.Name}'.");
        return found.Select(RegionMismatchInfo.Of).ToArray();
    }
}
