using System.Diagnostics;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// kmirrord: the mirror's own thread. It routes writes by region state (marking the log and flushing it before
/// the writes it covers), retries failed reads, records failed legs in the log before the I/O they failed is
/// answered, runs flushes and schedules the recovery. Completions arrive on I/O threads; they only account and
/// wake it.
/// </summary>
public sealed partial class MirrorDevice
{
    /// <summary>How often clears reach the log at most: each costs a flush of every leg.</summary>
    private static readonly TimeSpan ClearInterval = TimeSpan.FromMilliseconds(500);
    private readonly object _queueLock = new();
    private readonly List<RegionIo> _writes = new();
    private readonly List<RegionIo> _readRetries = new();
    private readonly List<RegionIo> _flushes = new();
    private readonly List<RegionIo> _failures = new();
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly object _syncLock = new();
    private readonly Thread _daemon;
    private TaskCompletionSource _inSync = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _stopDaemon;
    private long _nextClearTimestamp;

    private void Wake() => _wake.Set();

    private void RunDaemon()
    {
        while (!_stopDaemon)
        {
            _wake.Wait(TimeUntilTimedWork());
            _wake.Reset();
            DoMirror();
        }
        DoMirror(); // what the last wake brought
    }

    /// <summary>
    /// One pass (do_mirror). Failures first: a failed leg is recorded before anything else is routed to it; ended
    /// recoveries give back held writes and free recovery slots; then reads, then writes, whose log marks are
    /// flushed before they go out; flushes last, so they follow the writes of this pass; then the lazy clears.
    /// </summary>
    private void DoMirror()
    {
        DoDaemonWork();
        DoFailures();
        EndRecoveredRegions();
        PromoteStaleLegs();
        DoRecovery();
        DoReadRetries();
        DoWrites();
        DoFlushes();
        TryFlushLog(includeClears: false);
        DoLazyClears();
        if (State == MirrorState.InSync)
            lock (_syncLock) _inSync.TrySetResult();
    }

    private TimeSpan TimeUntilTimedWork()
    {
        long now = Stopwatch.GetTimestamp();
        long at = long.MaxValue;
        if (_log.ClearsPending) at = Math.Max(now, _nextClearTimestamp);
        long retry = Interlocked.Read(ref _recoveryRetryTimestamp);
        if (retry != 0) at = Math.Min(at, Math.Max(now, retry));
        return at == long.MaxValue ? Timeout.InfiniteTimeSpan : Stopwatch.GetElapsedTime(now, at) + TimeSpan.FromMilliseconds(1);
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
    /// An in-sync region is read from the alive legs in turn; any other region only from the default leg, the one
    /// that holds its data, and fails if that leg cannot serve it ("reads may fail" beats stale data).
    /// Runs on the submitter's thread, or on the daemon for a retry.
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
    /// Routes each queued write by its region (do_writes): in sync -> every leg that takes writes, once the log
    /// marks the region dirty on disk; out of sync -> the default leg; recovering -> held until the copy ends.
    /// With the default leg dead every write fails: only it could hold them all, and acknowledging a write it
    /// lacks would lose it when the default is resynced back over the others.
    /// </summary>
    private void DoWrites()
    {
        var batch = TakeAll(_writes);
        if (batch.Count == 0) return;
        var routed = new List<(RegionIo Io, WriteRoute Route)>();
        bool marked = false;
        foreach (var io in batch)
        {
            var route = _regions.BeginWrite(io, out bool m);
            if (route != WriteRoute.Held) routed.Add((io, route));
            marked |= m;
        }
        bool logged = !marked || TryFlushLog(includeClears: false);
        var defaultLeg = DefaultLeg;
        var span = new List<RegionIo>();
        ulong spanTargets = 0;
        foreach (var (io, route) in routed)
        {
            if (!defaultLeg.IsAlive || (route == WriteRoute.AllLegs && !logged))
            {
                // Nothing was issued: the region keeps its state.
                _regions.EndWrite(io.Region, notOnEveryLeg: false);
                io.Finish(Errno.EIO);
                continue;
            }
            io.IsSyncWrite = route == WriteRoute.AllLegs;
            ulong targets = io.IsSyncWrite ? LegsTakingWrites() : defaultLeg.Bit;
            if (span.Count > 0 && (targets != spanTargets || !LegSpan.Continues(span[^1], io)))
            {
                SubmitSpan(span, spanTargets);
                span.Clear();
            }
            span.Add(io);
            spanTargets = targets;
        }
        if (span.Count > 0) SubmitSpan(span, spanTargets);
    }

    /// <summary>Issues pieces that follow each other to the same legs as one I/O per leg (see <see cref="LegSpan"/>).</summary>
    private void SubmitSpan(List<RegionIo> pieces, ulong targets)
    {
        if (pieces.Count == 1)
        {
            SubmitToLegs(pieces[0], targets);
            return;
        }
        var span = new LegSpan([.. pieces], targets);
        foreach (var io in pieces) io.Begin(targets);
        foreach (var leg in LegsIn(targets)) SubmitToLeg(leg, span, pieces[0].Operation, span.OffsetBytes, span.LengthBytes, span.Buffers);
        foreach (var io in pieces) io.ReleaseIssuer();
    }

    /// <summary>A write ended on all its legs (write_callback). A leg that failed it goes to the daemon first.</summary>
    private void WriteDone(RegionIo io)
    {
        if (io.FailedLegs != 0)
        {
            Queue(_failures, io, atFront: false);
            return;
        }
        EndWrite(io, loggedFailures: true);
    }

    /// <summary>
    /// Ends a write whose failed legs are dead and recorded. A region some leg lacks falls out of sync, so the log
    /// says it needs a resync. The write is acknowledged only when the default leg (after any failover) holds it.
    /// </summary>
    private void EndWrite(RegionIo io, bool loggedFailures)
    {
        ulong written = io.Targets & ~io.FailedLegs;
        // A write to an out-of-sync region goes to the default leg alone by design (the recovery copies it on);
        // only one meant for every leg can leave its region out of sync by missing one.
        bool missedALeg = io.IsSyncWrite && written != AllLegs;
        if (_regions.EndWrite(io.Region, notOnEveryLeg: missedALeg)) Wake();
        bool acknowledged = loggedFailures && (written & DefaultLeg.Bit) != 0;
        io.Finish(acknowledged ? 0 : io.Errno != 0 ? io.Errno : Errno.EIO);
    }

    // ---- failures -------------------------------------------------------------------------------------------

    /// <summary>
    /// Writes and flushes some leg failed (do_failures): the leg dies and the log records it, with the new default
    /// if it moved, before the I/O is answered. dm-raid1 would answer at once, which loses the write when the dead
    /// leg returns after a restart and is copied back over the good ones. If the log cannot be written, the I/O fails.
    /// </summary>
    private void DoFailures()
    {
        var batch = TakeAll(_failures);
        if (batch.Count == 0) return;
        foreach (var io in batch)
            foreach (var leg in LegsIn(io.FailedLegs)) FailLeg(leg, io.Operation == BlockOperation.Flush ? "a flush" : "a write", io.Errno);
        bool logged = TryFlushLog(includeClears: false);
        foreach (var io in batch)
        {
            if (io.Operation == BlockOperation.Flush) EndFlush(io, logged);
            else EndWrite(io, logged);
        }
    }

    // ---- flushes --------------------------------------------------------------------------------------------

    private void DoFlushes()
    {
        var batch = TakeAll(_flushes);
        if (batch.Count == 0) return;
        bool logFlushed = TryFlushLog(includeClears: false);
        foreach (var io in batch)
        {
            ulong targets = LegsTakingWrites();
            if (!logFlushed || targets == 0)
            {
                io.Finish(Errno.EIO);
                continue;
            }
            SubmitToLegs(io, targets);
        }
    }

    private void FlushDone(RegionIo io)
    {
        if (io.FailedLegs != 0) Queue(_failures, io, atFront: false);
        else EndFlush(io, loggedFailures: true);
    }

    private void EndFlush(RegionIo io, bool loggedFailures)
    {
        bool acknowledged = loggedFailures && ((io.Targets & ~io.FailedLegs) & DefaultLeg.Bit) != 0;
        io.Finish(acknowledged ? 0 : io.Errno != 0 ? io.Errno : Errno.EIO);
    }

    /// <summary>Issues one I/O to each of <paramref name="targets"/>; it ends when the last of them does.</summary>
    private void SubmitToLegs(RegionIo io, ulong targets)
    {
        io.Begin(targets);
        foreach (var leg in LegsIn(targets)) SubmitToLeg(leg, io);
        io.ReleaseIssuer();
    }

    // ---- the log ----------------------------------------------------------------------------------------------

    private bool TryFlushLog(bool includeClears)
    {
        try
        {
            _log.Flush(includeClears);
            return true;
        }
        catch (IOException ex)
        {
            Warn($"Writing the mirror log failed: {ex.Message}");
            return false;
        }
    }

    /// <summary>
    /// A clean bit on disk promises the region is the same on every leg's media, so clears go out only after a
    /// flush of every leg, and at most every <see cref="ClearInterval"/>: a clean region may stay dirty on disk
    /// a little longer (and be resynced after a crash), never the other way round.
    /// </summary>
    private void DoLazyClears()
    {
        if (!_log.ClearsPending || Stopwatch.GetTimestamp() < _nextClearTimestamp) return;
        _nextClearTimestamp = Stopwatch.GetTimestamp() + (long)(ClearInterval.TotalSeconds * Stopwatch.Frequency);
        if (FlushLegs()) TryFlushLog(includeClears: true);
    }

    private void StopDaemon()
    {
        _stopDaemon = true;
        Wake();
        _daemon.Join();
    }
}
