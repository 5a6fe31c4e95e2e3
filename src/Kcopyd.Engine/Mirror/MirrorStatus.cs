namespace Kcopyd.Engine.Mirror;

/// <summary>The health of a mirror as a whole.</summary>
public enum MirrorState
{
    /// <summary>No leg is dead, and some regions or stale legs are still to be copied.</summary>
    Recovering,
    InSync,
    /// <summary>A leg is dead: the mirror serves from the live ones.</summary>
    Degraded,
}

/// <summary>One leg in a mirror's status.</summary>
public sealed class MirrorLegStatus
{
    public string Path { get; init; } = "";

    public string Name { get; init; } = "";

    /// <summary>Who the leg is whatever its path (what the log records).</summary>
    public string StableId { get; init; } = "";

    public LegHealth Health { get; init; }

    public bool IsDefault { get; init; }

    public long Reads { get; init; }

    public long ReadErrors { get; init; }

    public long WriteErrors { get; init; }

    /// <summary>Requests sent to the leg and not answered yet (a hung leg's are held until it answers).</summary>
    public int IoInFlight { get; init; }

    /// <summary>Answers to requests the mirror had given up on when the leg timed out.</summary>
    public long LateAnswers { get; init; }

    public override string ToString() => $"{Path} ({Health})";
}

/// <summary>A snapshot of a mirror, like <c>dmsetup status</c> of a dm-raid1 target, with plain properties.</summary>
public sealed class MirrorStatus
{
    public string Name { get; init; } = "";

    public long SizeBytes { get; init; }

    public long RegionSizeBytes { get; init; }

    public long RegionCount { get; init; }

    public long InSyncRegions { get; init; }

    public double SyncPercent => RegionCount == 0 ? 100 : Math.Round(100.0 * InSyncRegions / RegionCount, 2);

    public MirrorState State { get; init; }

    public MirrorLegStatus[] Legs { get; init; } = [];

    /// <summary>The leg that holds every acknowledged write: recovery copies from it, out-of-sync regions are read from it.</summary>
    public string DefaultLeg { get; init; } = "";

    /// <summary>What went wrong with the mirror's legs and log, newest last (a degraded mirror says why here).</summary>
    public string[] Warnings { get; init; } = [];

    /// <summary>"core" or "disk".</summary>
    public string LogKind { get; init; } = "core";

    public string? LogPath { get; init; }

    public int RequestPoolInUse { get; init; }

    public int RequestPoolSize { get; init; }

    /// <summary>Threads waiting for a request slot.</summary>
    public int RequestPoolWaiters { get; init; }

    /// <summary>Average rate of the recovery so far.</summary>
    public long RecoveryBytesPerSecond { get; init; }

    /// <summary>The recovery throttle: at most this many bytes per second, 0 for no limit.</summary>
    public long RecoveryLimitBytesPerSecond { get; init; }

    /// <summary>How long a leg may leave a request unanswered before it is failed as hung; zero: no limit.</summary>
    public TimeSpan LegTimeout { get; init; }

    /// <summary>Bytes the recovery copied.</summary>
    public long RecoveredBytes { get; init; }

    /// <summary>Regions this mirror brought in sync by copying (not counting those in sync from the start).</summary>
    public long RecoveredRegions { get; init; }

    public int RecoveringRegions { get; init; }

    /// <summary>Writes waiting for their region's recovery to end.</summary>
    public int HeldWrites { get; init; }

    public override string ToString() => $"{Name}: {State}, {InSyncRegions}/{RegionCount} regions in sync";
}
