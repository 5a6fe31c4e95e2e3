using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Mirror;

/// <summary>Whether a leg still takes I/O.</summary>
public enum LegHealth
{
    Alive,
    /// <summary>A write (or a recovery copy) to it failed: it gets no more I/O until the mirror is rebuilt.</summary>
    Dead,
}

/// <summary>One device of a mirror, with its health and I/O counters.</summary>
public sealed class MirrorLeg
{
    private int _health = (int)LegHealth.Alive;
    private long _reads;
    private long _readErrors;
    private long _writeErrors;

    internal MirrorLeg(IBlockDevice device, int index)
    {
        Device = device;
        Index = index;
    }

    public IBlockDevice Device { get; }

    /// <summary>The leg's path (or the name of the mirror it is).</summary>
    public string Name => Device.Name;

    /// <summary>Position in the mirror's leg list; also the bit of this leg in leg masks.</summary>
    public int Index { get; }

    public LegHealth Health => (LegHealth)Volatile.Read(ref _health);

    public bool IsAlive => Health == LegHealth.Alive;

    /// <summary>Reads this leg served (the balance of in-sync reads shows here).</summary>
    public long Reads => Interlocked.Read(ref _reads);

    public long ReadErrors => Interlocked.Read(ref _readErrors);

    public long WriteErrors => Interlocked.Read(ref _writeErrors);

    internal ulong Bit => 1UL << Index;

    internal void CountRead() => Interlocked.Increment(ref _reads);

    internal void CountReadError() => Interlocked.Increment(ref _readErrors);

    internal void CountWriteError() => Interlocked.Increment(ref _writeErrors);

    /// <summary>Marks the leg dead; true only for the caller that actually killed it.</summary>
    internal bool TryMarkDead()
        => Interlocked.CompareExchange(ref _health, (int)LegHealth.Dead, (int)LegHealth.Alive) == (int)LegHealth.Alive;

    public override string ToString() => $"{Name} ({Health})";
}
