namespace Kcopyd.Engine.Mirror;

/// <summary>How a mirror is built. Sizes are bytes.</summary>
public sealed record MirrorOptions
{
    public const long DefaultRegionSizeBytes = 512 * 1024;

    /// <summary>The mirror's name; a unique "mirrorN" when null.</summary>
    public string? Name { get; init; }

    /// <summary>A power of two and a multiple of the legs' logical block size.</summary>
    public long RegionSizeBytes { get; init; } = DefaultRegionSizeBytes;

    /// <summary>A file for a persistent dirty-region log; null keeps the log in memory (the "core" log).</summary>
    public string? LogPath { get; init; }

    /// <summary>Take every region as in sync without copying. A persistent log that already exists wins over this.</summary>
    public bool NoSync { get; init; }

    /// <summary>
    /// Start the persistent log afresh, every region out of sync (a full resync from the first leg), when the log
    /// fails its check, belongs to another mirror or names other legs. Without it such a log is refused.
    /// </summary>
    public bool ResetLog { get; init; }

    /// <summary>Requests the mirror works on at once; further submitters wait for a slot.</summary>
    public int RequestPoolSize { get; init; } = 64;

    /// <summary>Regions recovered at once (dm-raid1 copies them one after the other; a few overlap here).</summary>
    public int RecoveryRegionsInFlight { get; init; } = 2;

    /// <summary>The recovery's bandwidth limit from the start, in bytes per second; 0 is unlimited.</summary>
    public long RecoveryBytesPerSecond { get; init; }

    /// <summary>Pages (64 KiB) in the page pool of the mirror's own copy client.</summary>
    public int PageCount { get; init; } = 64;

    /// <summary>I/O the mirror keeps in flight to its legs (ring entries of its own I/O queue; threads for the blocking backend).</summary>
    /// <remarks>
    /// Each request in flight takes one per leg: 8 held an NBD client's 256 KiB writes to 4 at a time on 2 legs, and the
    /// kmirrord thread waited for a free entry before it could route anything else.
    /// </remarks>
    public int IoDepth { get; init; } = 32;

    /// <summary>
    /// Told of each copy job the mirror starts for itself (a recovery copy, <see cref="Copy.CopyJob.Internal"/>), on its
    /// daemon thread, so a host can list them: keep it short and never block in it.
    /// </summary>
    public Action<Copy.CopyJob>? InternalJobStarted { get; init; }

    /// <summary>
    /// How long a request to a leg may go unanswered before the leg is failed as hung (like a leg returning errors:
    /// writes go on to the other legs and are acknowledged). <see cref="TimeSpan.Zero"/> waits for ever. The default is
    /// SCSI's 30 s command timeout: a working disk under load, or a path failing over, answers well within it.
    /// </summary>
    public TimeSpan LegTimeout { get; init; } = DefaultLegTimeout;

    public static readonly TimeSpan DefaultLegTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Dispose the legs when the mirror is disposed.</summary>
    public bool OwnsLegs { get; init; }
}
