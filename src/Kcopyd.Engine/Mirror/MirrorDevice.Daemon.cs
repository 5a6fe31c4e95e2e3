using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// kmirrord: the mirror's own thread. It routes writes by region state (marking the log and flushing it before
/// the writes it covers), retries failed reads, runs flushes and schedules the recovery. Completions arrive on
/// I/O threads; they only account and wake it.
/// </summary>
public sealed partial class MirrorDevice
{
    private readonly object _queueLock = new();
    private readonly List<RegionIo> _writes = new();
    private readonly List<RegionIo> _readRetries = new();
    private readonly List<RegionIo> _flushes = new();
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly object _syncLock = new();
    private readonly Thread _daemon;
    private TaskCompletionSource _inSync = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _stopDaemon;

    private void Wake() => _wake.Set();

    private void RunDaemon()
    {
        while (!_stopDaemon)
        {
            _wake.Wait();
            _wake.Reset();
            DoMirror();
        }
        DoMirror(); // what the last wake brought, and the last lazy clears
    }

    /// <summary>
    /// One pass (do_mirror). Ended recoveries first: they give back held writes and free recovery slots for new
    /// regions; then reads, then writes, whose log marks are flushed before they go out; flushes last, so they
    /// follow the writes of this pass; the log flush at the end carries the lazy clears.
    /// </summary>
    private void DoMirror()
    {
        EndRecoveredRegions();
        DoRecovery();
        DoReadRetries();
        DoWrites();
        DoFlushes();
        TryFlushLog();
        if (State == MirrorState.InSync)
            lock (_syncLock) _inSync.TrySetResult();
    }

    private void Queue(List<RegionIo> queue, RegionIo io, bool atFront)
    {
        lock (_queueLock)
        {
            if (atFront) queue.Insert(0, io); else queue.Add(io);
        }
        Wake();
    }

    private List<RegionIo> TakeAll(List<RegionIo> queue)
    {
        lock (_queueLock)
        {
            var all = new List<RegionIo>(queue);
            queue.Clear();
            return all;
        }
    }

    // ---- reads ----------------------------------------------------------------------------------------------

    /// <summary>
    /// An in-sync region is read from the live legs in turn; any other region only from the default leg, the one
    /// that holds its data. Runs on the submitter's thread, or on the daemon for a retry.
    /// </summary>
    private void IssueRead(RegionIo io)
    {
        var leg = ChooseReadLeg(io);
        if (leg == null)
        {
            io.Finish(io.Errno != 0 ? io.Errno : Errno.EIO);
            return;
        }
        io.TriedLegs |= leg.Bit;
        leg.CountRead();
        io.Begin(leg.Bit);
        SubmitToLeg(leg, io);
        io.ReleaseIssuer();
    }

    private MirrorLeg? ChooseReadLeg(RegionIo io)
    {
        if (_regions.IsInSync(io.Region))
        {
            int start = (int)((ulong)Interlocked.Increment(ref _readCursor) % (ulong)_legs.Length);
            for (int k = 0; k < _legs.Length; k++)
            {
                var leg = _legs[(start + k) % _legs.Length];
                if (leg.IsAlive && (io.TriedLegs & leg.Bit) == 0) return leg;
            }
            return null;
        }
        var defaultLeg = DefaultLeg;
        return defaultLeg.IsAlive && (io.TriedLegs & defaultLeg.Bit) == 0 ? defaultLeg : null;
    }

    /// <summary>A failed read goes back to the daemon, which tries another leg (never on an I/O thread, which must not block).</summary>
    private void ReadDone(RegionIo io)
    {
        if (io.FailedLegs == 0)
        {
            io.Finish(0);
            return;
        }
        foreach (var leg in LegsIn(io.FailedLegs)) leg.CountReadError();
        Queue(_readRetries, io, atFront: false);
    }

    private void DoReadRetries()
    {
        foreach (var io in TakeAll(_readRetries)) IssueRead(io);
    }

    // ---- writes ---------------------------------------------------------------------------------------------

    /// <summary>
    /// Routes each queued write by its region (do_writes): in sync -> every live leg once the log marks the region
    /// dirty on disk; out of sync -> the default leg; recovering -> held until the copy ends.
    /// </summary>
    private void DoWrites()
    {
        var batch = TakeAll(_writes);
        if (batch.Count == 0) return;
        var toAll = new List<RegionIo>();
        var toDefault = new List<RegionIo>();
        bool marked = false;
        foreach (var io in batch)
        {
            switch (_regions.BeginWrite(io, out bool m))
            {
                case WriteRoute.AllLegs: toAll.Add(io); break;
                case WriteRoute.DefaultLeg: toDefault.Add(io); break;
            }
            marked |= m;
        }
        if (marked && !TryFlushLog())
        {
            // The mark is not on disk: issuing the write could leave a region changed on one leg and called clean.
            foreach (var io in toAll)
            {
                _regions.EndWrite(io.Region, notOnEveryLeg: false);
                io.Finish(Errno.EIO);
            }
            toAll.Clear();
        }
        foreach (var io in toAll)
        {
            io.IsSyncWrite = true;
            IssueWrite(io, LiveLegs());
        }
        foreach (var io in toDefault)
        {
            io.IsSyncWrite = false;
            var defaultLeg = DefaultLeg;
            IssueWrite(io, defaultLeg.IsAlive ? defaultLeg.Bit : 0);
        }
    }

    private void IssueWrite(RegionIo io, ulong targets)
    {
        if (targets == 0)
        {
            if (_regions.EndWrite(io.Region, notOnEveryLeg: true)) Wake();
            io.Finish(Errno.EIO);
            return;
        }
        SubmitToLegs(io, targets);
    }

    /// <summary>
    /// A write ended on all its legs (write_callback). Legs that failed die; the write counts as done when any
    /// leg took it. A region some leg lacks falls out of sync, so the log says it needs a resync.
    /// </summary>
    private void WriteDone(RegionIo io)
    {
        ulong written = FailLegsThatFailed(io);
        if (_regions.EndWrite(io.Region, notOnEveryLeg: written != _allLegs)) Wake();
        FinishOnAnyLeg(io, written);
    }

    // ---- flushes --------------------------------------------------------------------------------------------

    private void DoFlushes()
    {
        var batch = TakeAll(_flushes);
        if (batch.Count == 0) return;
        bool logFlushed = TryFlushLog();
        foreach (var io in batch)
        {
            ulong targets = LiveLegs();
            if (!logFlushed || targets == 0)
            {
                io.Finish(Errno.EIO);
                continue;
            }
            SubmitToLegs(io, targets);
        }
    }

    private void FlushDone(RegionIo io) => FinishOnAnyLeg(io, FailLegsThatFailed(io));

    /// <summary>Issues one I/O to each of <paramref name="targets"/>; it ends when the last of them does.</summary>
    private void SubmitToLegs(RegionIo io, ulong targets)
    {
        io.Begin(targets);
        foreach (var leg in LegsIn(targets)) SubmitToLeg(leg, io);
        io.ReleaseIssuer();
    }

    /// <summary>Every leg that failed this I/O dies; returns the legs that took it.</summary>
    private ulong FailLegsThatFailed(RegionIo io)
    {
        foreach (var leg in LegsIn(io.FailedLegs)) FailLeg(leg);
        return io.Targets & ~io.FailedLegs;
    }

    /// <summary>A write or flush succeeds when any leg took it; a mirror with a live leg keeps serving.</summary>
    private static void FinishOnAnyLeg(RegionIo io, ulong took) => io.Finish(took != 0 ? 0 : io.Errno != 0 ? io.Errno : Errno.EIO);

    // ---- legs -----------------------------------------------------------------------------------------------

    /// <summary>Leg I/O always goes through the mirror's own queue: a caller's queue may belong to a client that waits on us.</summary>
    private void SubmitToLeg(MirrorLeg leg, RegionIo io)
    {
        var request = new BlockRequest(io.Operation, io.OffsetBytes, io.LengthBytes, io.Buffers, io, leg.Index);
        try
        {
            leg.Device.Submit(request, Client.Queue);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
        {
            io.Completed(leg.Index, Errno.EIO);
        }
    }

    /// <summary>A leg whose write failed gets no more I/O (fail_mirror); if it was the default, the first live leg takes over.</summary>
    private void FailLeg(MirrorLeg leg)
    {
        leg.CountWriteError();
        if (!leg.TryMarkDead()) return;
        if (Volatile.Read(ref _defaultLeg) == leg.Index)
        {
            var next = _legs.FirstOrDefault(l => l.IsAlive);
            if (next != null) Interlocked.CompareExchange(ref _defaultLeg, next.Index, leg.Index);
        }
        lock (_syncLock)
        {
            if (_inSync.Task.IsCompleted) _inSync = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        Wake();
    }

    private ulong LiveLegs()
    {
        ulong mask = 0;
        foreach (var leg in _legs)
            if (leg.IsAlive) mask |= leg.Bit;
        return mask;
    }

    private IEnumerable<MirrorLeg> LegsIn(ulong mask)
    {
        for (int i = 0; i < _legs.Length; i++)
            if ((mask & (1UL << i)) != 0) yield return _legs[i];
    }

    private bool TryFlushLog()
    {
        try
        {
            _log.Flush();
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private void StopDaemon()
    {
        _stopDaemon = true;
        Wake();
        _daemon.Join();
    }
}
