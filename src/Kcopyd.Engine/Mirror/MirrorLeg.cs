using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Mirror;

/// <summary>Whether a leg takes I/O and holds current data. Kept in a persistent log, so it survives restarts.</summary>
public enum LegHealth
{
    /// <summary>Holds every in-sync region; serves reads and takes writes.</summary>
    Alive,
    /// <summary>A write, flush or recovery copy to it failed: it gets no I/O until it is repaired.</summary>
    Dead,
    /// <summary>Back after being dead (or new): takes writes and is resynced, but serves no reads and is never a source.</summary>
    Stale,
}

/// <summary>One device of a mirror, with its health and I/O counters.</summary>
public sealed class MirrorLeg
{
    private int _health;
    private long _reads;
    private long _readErrors;
    private long _writeErrors;

    internal MirrorLeg(IBlockDevice device, int index, LegHealth health = LegHealth.Alive)
    {
        Device = device;
        Index = index;
        StableId = LegIdentity.Of(device);
        _health = (int)health;
    }

    public IBlockDevice Device { get; }

    /// <summary>The leg's path (or the name of the mirror it is).</summary>
    public string Name => Device.Name;

    /// <summary>Who the leg is whatever its path: what the log records and checks.</summary>
    public string StableId { get; }

    /// <summary>Position in the mirror's leg list; also the bit of this leg in leg masks.</summary>
    public int Index { get; }

    public LegHealth Health => (LegHealth)Volatile.Read(ref _health);

    /// <summary>Serves reads of in-sync regions.</summary>
    public bool IsAlive => Health == LegHealth.Alive;

    /// <summary>Takes writes and recovery copies (alive or stale).</summary>
    public bool TakesWrites => Health != LegHealth.Dead;

    /// <summary>Reads this leg served (the balance of in-sync reads shows here).</summary>
    public long Reads => Interlocked.Read(ref _reads);

    public long ReadErrors => Interlocked.Read(ref _readErrors);

    public long WriteErrors => Interlocked.Read(ref _writeErrors);

    internal ulong Bit => 1UL << Index;

    internal void CountRead() => Interlocked.Increment(ref _reads);

    internal void CountReadError() => Interlocked.Increment(ref _readErrors);

    internal void CountWriteError() => Interlocked.Increment(ref _writeErrors);

    /// <summary>Changed only under the mirror's leg lock, which also picks the default leg.</summary>
    internal void SetHealth(LegHealth health) => Volatile.Write(ref _health, (int)health);

    internal LogLeg ToLogLeg() => new(StableId, Name, Device.SizeBytes, Health);

    public override string ToString() => $"{Name} ({Health})";
}
