namespace Kcopyd.Engine.Mirror;

/// <summary>Where the daemon sends a write, by the state of its region.</summary>
internal enum WriteRoute
{
    /// <summary>In sync: to every live leg, after the region is marked in the log.</summary>
    AllLegs,
    /// <summary>Out of sync: to the default leg alone; the recovery copies it on.</summary>
    DefaultLeg,
    /// <summary>Recovering: kept, with its pool slot, until the region's copy ends.</summary>
    Held,
}

/// <summary>
/// The state of every region with something going on (dm-region-hash): writes in flight, a recovery, held
/// writes. A region not in the table is Clean or NoSync as the log says. One lock covers the table and the
/// log calls made with it, so a region's state and its log bits always change together.
/// </summary>
internal sealed class RegionHash
{
    private sealed class Region(RegionState state)
    {
        public RegionState State = state;
        public int Pending;
        /// <summary>A write that ended while the region was recovering or scrubbed missed some leg.</summary>
        public bool MissedLeg;
        public List<RegionIo>? Held;
    }

    private readonly object _lock = new();
    private readonly Dictionary<long, Region> _regions = new();
    private readonly List<long> _quiesced = new();
    private readonly List<(long Region, bool Success)> _recovered = new();
    private readonly IDirtyLog _log;
    private int _heldWrites;
    private int _recovering;

    public RegionHash(IDirtyLog log) => _log = log;

    public int HeldWrites => Volatile.Read(ref _heldWrites);

    /// <summary>Regions marked recovering, whether their copy runs yet or they still wait for writes to drain.</summary>
    public int RecoveringRegions => Volatile.Read(ref _recovering);

    public RegionState StateOf(long region)
    {
        lock (_lock) return StateOfLocked(region);
    }

    public bool IsInSync(long region) => StateOf(region) is RegionState.Clean or RegionState.Dirty;

    /// <summary>
    /// Routes a write by its region's state and counts it as pending there (dm_rh_inc_pending). A clean region
    /// turns dirty and is marked in the log: <paramref name="marked"/> tells the daemon to flush the log first.
    /// </summary>
    public WriteRoute BeginWrite(RegionIo io, out bool marked)
    {
        marked = false;
        lock (_lock)
        {
            var state = StateOfLocked(io.Region);
            if (state == RegionState.Recovering)
            {
                var held = _regions[io.Region];
                (held.Held ??= new()).Add(io);
                _heldWrites++;
                return WriteRoute.Held;
            }
            var region = GetOrAdd(io.Region, state);
            region.Pending++;
            if (state == RegionState.Clean)
            {
                region.State = RegionState.Dirty;
                _log.MarkRegion(io.Region);
                marked = true;
            }
            return state == RegionState.NoSync ? WriteRoute.DefaultLeg : WriteRoute.AllLegs;
        }
    }

    /// <summary>
    /// A write of the region ended (dm_rh_dec). With <paramref name="notOnEveryLeg"/> some leg lacks it, so the
    /// region falls out of sync (dm_rh_mark_nosync). The last write out leaves a dirty region clean (the log is
    /// cleared lazily) or lets a waiting recovery start. Returns true when the daemon has something to do: a clear
    /// for a log that writes its clears out (a core log has none), or a recovery to start.
    /// </summary>
    public bool EndWrite(long region, bool notOnEveryLeg)
    {
        lock (_lock)
        {
            var entry = _regions[region];
            if (notOnEveryLeg && entry.State is RegionState.Clean or RegionState.Dirty)
            {
                entry.State = RegionState.NoSync;
                _log.SetRegionSync(region, false);
            }
            else if (notOnEveryLeg && entry.State == RegionState.Recovering)
            {
                entry.MissedLeg = true;
            }
            if (--entry.Pending > 0) return false;
            switch (entry.State)
            {
                case RegionState.Dirty:
                    _log.ClearRegion(region);
                    _regions.Remove(region);
                    return _log.ClearsPending;
                case RegionState.Recovering:
                    _quiesced.Add(region);
                    return true;
                default:
                    _regions.Remove(region);
                    return false;
            }
        }
    }

    /// <summary>Marks a region the log gave as resync work recovering; it is quiesced at once if no write is in flight.</summary>
    public void BeginRecovery(long region)
    {
        lock (_lock)
        {
            var entry = GetOrAdd(region, RegionState.NoSync);
            entry.State = RegionState.Recovering;
            _recovering++;
            if (entry.Pending == 0) _quiesced.Add(region);
        }
    }

    /// <summary>
    /// Holds an in-sync region for a scrub as a recovery would (new writes held, those in flight drained); false
    /// for a region out of sync or already recovering, which the recovery will copy anyway.
    /// </summary>
    public bool TryBeginScrub(long region)
    {
        lock (_lock)
        {
            var state = StateOfLocked(region);
            if (state is not (RegionState.Clean or RegionState.Dirty)) return false;
            var entry = GetOrAdd(region, state);
            entry.State = RegionState.Recovering;
            _recovering++;
            if (entry.Pending == 0) _quiesced.Add(region);
            return true;
        }
    }

    /// <summary>Recovering regions with no write in flight: their copy may start.</summary>
    public List<long> TakeQuiesced()
    {
        lock (_lock)
        {
            var regions = new List<long>(_quiesced);
            _quiesced.Clear();
            return regions;
        }
    }

    /// <summary>A region's copy ended, on the copy client's worker: only queue it, the daemon does the rest.</summary>
    public void RecoveryCopied(long region, bool success)
    {
        lock (_lock) _recovered.Add((region, success));
    }

    public List<(long Region, bool Success)> TakeRecovered()
    {
        lock (_lock)
        {
            var regions = new List<(long, bool)>(_recovered);
            _recovered.Clear();
            return regions;
        }
    }

    /// <summary>
    /// Ends a region's recovery (complete_resync_work): the log learns whether it is in sync now, and the writes
    /// held on it come back to be routed again.
    /// </summary>
    public List<RegionIo> EndRecovery(long region, bool inSync)
    {
        lock (_lock)
        {
            var entry = _regions[region];
            inSync &= !entry.MissedLeg;
            _log.SetRegionSync(region, inSync);
            if (inSync) _log.ClearRegion(region);
            _regions.Remove(region);
            _recovering--;
            var held = entry.Held ?? new List<RegionIo>();
            _heldWrites -= held.Count;
            return held;
        }
    }

    private RegionState StateOfLocked(long region)
        => _regions.TryGetValue(region, out var entry) ? entry.State
            : _log.InSync(region) ? RegionState.Clean : RegionState.NoSync;

    private Region GetOrAdd(long region, RegionState state)
    {
        if (!_regions.TryGetValue(region, out var entry))
        {
            entry = new Region(state);
            _regions.Add(region, entry);
        }
        return entry;
    }
}
