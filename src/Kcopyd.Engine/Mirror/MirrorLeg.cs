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
    /// <summary>
    /// Failed like a dead leg because a request to it went unanswered for longer than the mirror's leg timeout; its
    /// I/O already in the kernel has not all returned. Dead once it has (the log records it as dead all along).
    /// </summary>
    Hung,
}

/// <summary>One device of a mirror, with its health and I/O counters.</summary>
public sealed class MirrorLeg
{
    private int _health;
    private long _reads;
    private long _readErrors;
    private long _writeErrors;
    private long _lateAnswers;
    private volatile bool _timedOut;
    private readonly HashSet<LegIo> _inFlight = [];

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
    public bool TakesWrites => Health is LegHealth.Alive or LegHealth.Stale;

    /// <summary>Requests sent to the leg that it has not answered yet, given up on or not.</summary>
    public int IoInFlight { get { lock (_inFlight) return _inFlight.Count; } }

    /// <summary>Answers the leg gave to requests the mirror had given up on (timed out).</summary>
    public long LateAnswers => Interlocked.Read(ref _lateAnswers);

    /// <summary>A request went unanswered past the leg timeout: nothing more is sent to the leg until it is re-added.</summary>
    internal bool TimedOut
    {
        get => _timedOut;
        set => _timedOut = value;
    }

    /// <summary>Reads this leg served (the balance of in-sync reads shows here).</summary>
    public long Reads => Interlocked.Read(ref _reads);

    public long ReadErrors => Interlocked.Read(ref _readErrors);

    public long WriteErrors => Interlocked.Read(ref _writeErrors);

    internal ulong Bit => 1UL << Index;

    internal void CountRead() => Interlocked.Increment(ref _reads);

    internal void CountReadError() => Interlocked.Increment(ref _readErrors);

    internal void CountWriteError() => Interlocked.Increment(ref _writeErrors);

    internal void CountLateAnswer() => Interlocked.Increment(ref _lateAnswers);

    internal void Track(LegIo io)
    {
        lock (_inFlight) _inFlight.Add(io);
    }

    internal void Untrack(LegIo io)
    {
        lock (_inFlight) _inFlight.Remove(io);
    }

    /// <summary>When the oldest request in flight was sent; 0 when none is.</summary>
    internal long OldestInFlightTimestamp()
    {
        lock (_inFlight)
        {
            long oldest = 0;
            foreach (var io in _inFlight)
                if (oldest == 0 || io.IssuedTimestamp < oldest) oldest = io.IssuedTimestamp;
            return oldest;
        }
    }

    internal LegIo[] InFlight()
    {
        lock (_inFlight) return [.. _inFlight];
    }

    /// <summary>Changed only under the mirror's leg lock, which also picks the default leg.</summary>
    internal void SetHealth(LegHealth health) => Volatile.Write(ref _health, (int)health);

    // A hung leg is a dead one to the log: after a restart it is re-added and resynced like any dead leg.
    internal LogLeg ToLogLeg() => new(StableId, Name, Device.SizeBytes, Health == LegHealth.Hung ? LegHealth.Dead : Health);

    public override string ToString() => $"{Name} ({Health})";
}
