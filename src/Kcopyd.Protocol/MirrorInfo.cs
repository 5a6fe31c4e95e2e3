using Kcopyd.Engine.Mirror;

namespace Kcopyd.Protocol;

/// <summary>
/// A mirror device as the cmdlets output it, taken at <see cref="Timestamp"/> (like dmsetup status of a dm-raid1
/// target): the names scripts use (DESIGN.md), one property per size, states as names so they survive Export-Clixml
/// and ConvertTo-Json. Get-MirrorDevice gives a fresh one; this one does not change.
/// </summary>
public sealed class MirrorInfo
{
    public string Name { get; set; } = "";
    /// <summary>Bytes.</summary>
    public long Size { get; set; }
    /// <summary>Bytes in each region, the unit of the log and of recovery.</summary>
    public long RegionSize { get; set; }
    public long RegionCount { get; set; }
    public long InSyncRegions { get; set; }
    public double SyncPercent { get; set; }
    /// <summary>A name of <see cref="MirrorState"/>: Recovering, InSync or Degraded.</summary>
    public string State { get; set; } = nameof(MirrorState.InSync);
    public MirrorLegInfo[] Legs { get; set; } = [];
    /// <summary>The leg that holds every acknowledged write: recovery copies from it, out-of-sync regions are read from it.</summary>
    public string DefaultLeg { get; set; } = "";
    /// <summary>The NBD URIs (and block devices) the mirror is published on.</summary>
    public string[] Exports { get; set; } = [];
    /// <summary>What went wrong with the mirror's legs and log, newest last (a degraded mirror says why here).</summary>
    public string[] Warnings { get; set; } = [];
    /// <summary>"core" or "disk".</summary>
    public string LogKind { get; set; } = "core";
    public string? LogPath { get; set; }
    public int RequestPoolInUse { get; set; }
    public int RequestPoolSize { get; set; }
    /// <summary>Threads waiting for a request slot.</summary>
    public int RequestPoolWaiters { get; set; }
    /// <summary>Average rate of the recovery so far.</summary>
    public long RecoveryBytesPerSecond { get; set; }
    /// <summary>The recovery throttle (Set-MirrorDevice -RecoveryBytesPerSecond): at most this many bytes per second, 0 for no limit.</summary>
    public long RecoveryLimitBytesPerSecond { get; set; }
    /// <summary>Seconds a leg may leave a request unanswered before it is failed as Hung (Set-MirrorDevice -LegTimeoutSeconds); 0 for no limit.</summary>
    public int LegTimeoutSeconds { get; set; }
    /// <summary>Bytes the recovery copied.</summary>
    public long RecoveredBytes { get; set; }
    /// <summary>Regions this mirror brought in sync by copying (not counting those in sync from the start).</summary>
    public long RecoveredRegions { get; set; }
    public int RecoveringRegions { get; set; }
    /// <summary>Writes waiting for their region's recovery to end.</summary>
    public int HeldWrites { get; set; }
    /// <summary>When the host took this snapshot: every other property is the mirror's state at this moment.</summary>
    public DateTime Timestamp { get; set; }

    public static MirrorInfo Of(MirrorStatus status, string[] exports) => new()
    {
        Name = status.Name,
        Size = status.SizeBytes,
        RegionSize = status.RegionSizeBytes,
        RegionCount = status.RegionCount,
        InSyncRegions = status.InSyncRegions,
        SyncPercent = status.SyncPercent,
        State = status.State.ToString(),
        Legs = status.Legs.Select(MirrorLegInfo.Of).ToArray(),
        DefaultLeg = status.DefaultLeg,
        Exports = exports,
        Warnings = status.Warnings,
        LogKind = status.LogKind,
        LogPath = status.LogPath,
        RequestPoolInUse = status.RequestPoolInUse,
        RequestPoolSize = status.RequestPoolSize,
        RequestPoolWaiters = status.RequestPoolWaiters,
        RecoveryBytesPerSecond = status.RecoveryBytesPerSecond,
        RecoveryLimitBytesPerSecond = status.RecoveryLimitBytesPerSecond,
        LegTimeoutSeconds = (int)status.LegTimeout.TotalSeconds,
        RecoveredBytes = status.RecoveredBytes,
        RecoveredRegions = status.RecoveredRegions,
        RecoveringRegions = status.RecoveringRegions,
        HeldWrites = status.HeldWrites,
        Timestamp = DateTime.Now,
    };

    public override string ToString() => $"{Name}: {State}, {InSyncRegions}/{RegionCount} regions in sync";
}

/// <summary>One leg of a mirror in its <see cref="MirrorInfo"/>.</summary>
public sealed class MirrorLegInfo
{
    public string Path { get; set; } = "";
    public string Name { get; set; } = "";
    /// <summary>Who the leg is whatever its path (what the log records).</summary>
    public string StableId { get; set; } = "";
    /// <summary>A name of <see cref="LegHealth"/>: Alive, Dead, Stale or Hung (unanswered past the leg timeout, failed like Dead).</summary>
    public string Health { get; set; } = nameof(LegHealth.Alive);
    public bool IsDefault { get; set; }
    public long Reads { get; set; }
    public long ReadErrors { get; set; }
    public long WriteErrors { get; set; }
    /// <summary>Requests sent to the leg and not answered yet; a Hung leg's are held, with their buffers, until it answers.</summary>
    public int IoInFlight { get; set; }
    /// <summary>Answers the leg gave after the mirror had given up on the requests (timed out).</summary>
    public long LateAnswers { get; set; }

    public static MirrorLegInfo Of(MirrorLegStatus leg) => new()
    {
        Path = leg.Path,
        Name = leg.Name,
        StableId = leg.StableId,
        Health = leg.Health.ToString(),
        IsDefault = leg.IsDefault,
        Reads = leg.Reads,
        ReadErrors = leg.ReadErrors,
        WriteErrors = leg.WriteErrors,
        IoInFlight = leg.IoInFlight,
        LateAnswers = leg.LateAnswers,
    };

    public override string ToString() => $"{Path} ({Health})";
}
