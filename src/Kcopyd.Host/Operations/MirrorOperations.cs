using Kcopyd.Engine;
using Kcopyd.Engine.Mirror;
using Kcopyd.Host.Registry;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Operations;

/// <summary>New-, Get-, Wait-, Set- and Remove-MirrorDevice, run in the host.</summary>
internal sealed class MirrorOperations(HostRegistry registry)
{
    private static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(10);

    private MirrorTable Mirrors => registry.Mirrors;

    /// <summary>The new mirror's status, or null when ShouldProcess said no.</summary>
    public MirrorInfo? NewMirror(OperationContext context, NewMirrorRequest r)
    {
        if (Mirrors.Exists(r.Name))
            throw new KcopydException("MirrorExists", KcopydErrorKind.AlreadyExists, $"A mirror device named '{r.Name}' exists already.", r.Name);
        MirrorDevice.CheckLegCount(r.Legs.Length); // before a leg is opened
        if (r.LegTimeoutSeconds is { } seconds) LegTimeout(seconds);
        var devices = new DeviceScope(Mirrors, registry.Jobs);
        MirrorDevice? mirror = null;
        try
        {
            var legs = r.Legs.Select(l => devices.OpenForWrite(l, r.Force, asLeg: true)).ToArray();
            if (!r.NoSync && !r.Force)
            {
                // Legs the mirror's own log knows are its own: re-creating a mirror from its log needs no -Force.
                var known = r.LogPath == null || r.ResetLog
                    ? new HashSet<string>()
                    : DiskDirtyLog.RecordedLegIds(r.LogPath, MirrorDevice.LogPlacementCheck(legs, r.LogPath));
                foreach (var leg in legs.Skip(1).Where(l => !known.Contains(LegIdentity.Of(l))))
                    LegChecks.RefuseIfHoldsData(leg, "a leg after the first");
            }
            string action = r.NoSync
                ? $"Create mirror '{r.Name}' without initial recovery"
                : $"Create mirror '{r.Name}' and overwrite bytes {CopyOperations.Span(0, legs.Min(l => l.SizeBytes))} of every leg after the first with {legs[0].Name}'s";
            if (!context.ShouldProcess(string.Join(", ", legs.Select(l => l.Name)), action))
            {
                devices.CloseAll();
                return null;
            }
            mirror = new MirrorDevice(legs, new MirrorOptions
            {
                Name = r.Name,
                RegionSizeBytes = r.RegionSize,
                LogPath = r.LogPath,
                NoSync = r.NoSync,
                ResetLog = r.ResetLog,
                RequestPoolSize = r.RequestPoolSize,
                RecoveryBytesPerSecond = r.RecoveryBytesPerSecond,
                LegTimeout = LegTimeout(r.LegTimeoutSeconds ?? (int)MirrorOptions.DefaultLegTimeout.TotalSeconds),
                InternalJobStarted = job => registry.InternalJobs.Add(job),
            });
            // Checked before the mirror is kept: a refused one leaves no definition behind.
            if (!r.NoSync && mirror.LogWasReused && mirror.FindSampledInSyncDifference() is { } differs)
                throw LogDoesNotFit(mirror, differs.Leg, differs.OffsetBytes);
            Mirrors.Add(mirror, devices.Opened, r.Force);
        }
        catch
        {
            // Whatever failed, no leg stays open (exclusively) behind the admin's back.
            mirror?.Dispose();
            devices.CloseAll();
            throw;
        }
        if (r.NoSync && mirror.FindSampledDifference() is { } offset)
            context.WriteWarning($"-NoSync trusts the legs of mirror '{r.Name}' to be identical, but they differ at byte {offset} (a sample of the legs was compared). " +
                                 "Run Test-MirrorDevice -Repair, or re-create the mirror without -NoSync.");
        return Describe(registry, mirror);
    }

    /// <summary>The mirror as the cmdlets output it, with where it is published.</summary>
    public static MirrorInfo Describe(HostRegistry registry, MirrorDevice mirror)
        => MirrorInfo.Of(mirror.GetStatus(), registry.Exports.Describe(mirror.Name));

    /// <summary>
    /// A log's in-sync regions are identical on its alive legs; a leg that differs there is not the storage the log
    /// knew, whatever its identity says (an image file deleted and re-created under the same inode): serving reads
    /// from it would be stale data. (-NoSync is the admin saying the legs are identical; it warns from a sample itself.)
    /// </summary>
    public static KcopydException LogDoesNotFit(MirrorDevice mirror, string leg, long offsetBytes)
    {
        string log = mirror.GetStatus().LogPath ?? "";
        return new KcopydException("LegIdentityMismatch", KcopydErrorKind.InvalidArgument,
            $"The mirror log '{log}' does not fit these legs: '{leg}' differs from the default leg '{mirror.DefaultLeg.Name}' at byte " +
            $"{offsetBytes}, in a region the log records in sync, so it is not the device the log knew (an image file " +
            "re-created under a reused inode, or a leg written outside the mirror). The mirror was not created; with the leg that " +
            "holds the data first, -ResetLog resyncs every other leg from it.", log);
    }

    public MirrorInfo[] GetMirrors() => Mirrors.All.Select(m => Describe(registry, m)).ToArray();

    /// <summary>Answers when the mirror is in sync, or after the timeout (at most 10 s) with its status then.</summary>
    public async Task<MirrorWait> WaitMirror(string name, int timeoutMilliseconds, CancellationToken cancellation)
    {
        var mirror = Mirrors.Get(name);
        var timeout = TimeSpan.FromMilliseconds(Math.Clamp(timeoutMilliseconds, 0, (int)MaxWait.TotalMilliseconds));
        bool inSync = await mirror.WaitForSyncAsync(timeout, cancellation);
        return new MirrorWait { Status = Describe(registry, mirror), InSync = inSync };
    }

    public MirrorInfo? SetMirror(OperationContext context, string name, long? recoveryBytesPerSecond, int? legTimeoutSeconds)
    {
        var mirror = Mirrors.Get(name);
        var timeout = legTimeoutSeconds is { } seconds ? LegTimeout(seconds) : (TimeSpan?)null;
        var what = new List<string>();
        if (recoveryBytesPerSecond is { } rate) what.Add($"limit recovery to {rate} bytes per second");
        if (timeout is { } t) what.Add(t == TimeSpan.Zero ? "never fail a leg that does not answer" : $"fail a leg that leaves a request unanswered for {t.TotalSeconds:0} s as hung");
        if (what.Count == 0) return Describe(registry, mirror);
        if (!context.ShouldProcess(mirror.Name, string.Join("; ", what))) return null;
        if (recoveryBytesPerSecond is { } newRate) mirror.RecoveryThrottle.BytesPerSecond = newRate;
        if (timeout is { } newTimeout) mirror.LegTimeout = newTimeout;
        Mirrors.Save(mirror.Name);
        return Describe(registry, mirror);
    }

    /// <summary>0 (no limit) or 1 s to a day: InvalidLegTimeout otherwise.</summary>
    private static TimeSpan LegTimeout(int seconds)
        => seconds is >= 0 and <= 86400
            ? TimeSpan.FromSeconds(seconds)
            : throw new KcopydException("InvalidLegTimeout", KcopydErrorKind.InvalidArgument,
                $"-LegTimeoutSeconds is 0 (never fail a leg for not answering) or 1 to 86400, not {seconds}.", seconds);

    /// <summary>Null when ShouldProcess said no.</summary>
    public MirrorRemoval? RemoveMirror(OperationContext context, string name, bool force)
    {
        var mirror = Mirrors.Get(name);
        if (!context.ShouldProcess(mirror.Name, "Flush, stop recovery and release the legs")) return null;
        return new MirrorRemoval { Closed = Mirrors.Remove(mirror.Name, force), CloseTimeoutSeconds = (int)MirrorTable.CloseTimeout.TotalSeconds };
    }
}
