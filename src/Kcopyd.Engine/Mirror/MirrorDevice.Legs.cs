using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// The legs' health and the default leg (fail_mirror, choose_mirror): changed only under the leg lock and
/// recorded in the log, so a restart knows which legs are current.
/// </summary>
public sealed partial class MirrorDevice
{
    private const int MaxWarnings = 32;
    private static readonly TimeSpan LegFlushTimeout = TimeSpan.FromSeconds(30);
    private readonly Queue<string> _warnings = new();

    private long _warningCount;

    /// <summary>What went wrong, newest last (bounded).</summary>
    public string[] Warnings { get { lock (_warnings) return _warnings.ToArray(); } }

    public long WarningCount { get { lock (_warnings) return _warningCount; } }

    public string[] WarningsSince(long count)
    {
        lock (_warnings) return _warnings.Skip((int)Math.Max(0, _warnings.Count - (_warningCount - count))).ToArray();
    }

    /// <summary>Leg I/O always goes through the mirror's own queue: a caller's queue may belong to a client that waits on us.</summary>
    private void SubmitToLeg(MirrorLeg leg, RegionIo io)
        => SubmitToLeg(leg, io, io.Operation, io.OffsetBytes, io.LengthBytes, io.Buffers);

    /// <summary>
    /// Every request to a leg is timed (see <see cref="LegIo"/>); a leg that timed out gets none: it fails at once
    /// with ETIMEDOUT, which the caller handles as any failure of that leg. The completion is told <c>tag</c>: the
    /// leg's index by default, a recovery copy's destination index when it comes through <see cref="TimedLeg"/>.
    /// </summary>
    internal void SubmitToLeg(MirrorLeg leg, IBlockCompletion completion, BlockOperation operation, long offsetBytes, long lengthBytes, IoBuffers buffers, int tag = -1)
    {
        if (tag < 0) tag = leg.Index;
        if (leg.TimedOut)
        {
            completion.Completed(tag, Errno.ETIMEDOUT);
            return;
        }
        var timed = new LegIo(leg, completion, operation, tag);
        leg.Track(timed);
        var request = new BlockRequest(operation, offsetBytes, lengthBytes, buffers, timed, tag);
        try
        {
            leg.Device.Submit(request, Client.Queue);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
        {
            timed.Completed(tag, Errno.EIO);
        }
    }

    /// <summary>
    /// A leg whose write, flush or recovery copy failed gets no more I/O. If it was the default, another alive leg
    /// takes over only while every region is in sync: out of sync, only the default holds the data of the
    /// out-of-sync regions, so it stays default and those regions fail rather than be served stale.
    /// </summary>
    private void FailLeg(MirrorLeg leg, string what, int errno)
    {
        leg.CountWriteError();
        lock (_legLock)
        {
            if (leg.Health is LegHealth.Dead or LegHealth.Hung) return;
            bool hung = leg.TimedOut;
            leg.SetHealth(hung ? LegHealth.Hung : LegHealth.Dead);
            string moved = "";
            if (_defaultLeg == leg.Index)
            {
                var next = NextDefaultLocked(leg);
                if (next != null)
                {
                    _defaultLeg = next.Index;
                    moved = $"; '{next.Name}' is the default leg now";
                }
                else
                {
                    moved = "; it stays the default leg, since the mirror is not in sync: out-of-sync regions and every write fail until it is repaired";
                }
            }
            RecordLegsLocked();
            Warn(hung
                ? $"Leg '{leg.Name}' has not answered {what} for longer than the leg timeout ({LegTimeout.TotalSeconds:0.#} s) and is hung, failed like a dead leg; the mirror is degraded{moved}. " +
                  $"Its {leg.IoInFlight} request(s) in flight stay in the kernel until it answers (writes are answered from the other legs, reads wait for it); Repair-MirrorDevice re-adds it then."
                : $"Leg '{leg.Name}' failed {what} ({Errno.DescribeNamed(errno == 0 ? Errno.EIO : errno)}) and is dead; the mirror is degraded{moved}.");
        }
        lock (_syncLock)
        {
            if (_inSync.Task.IsCompleted) _inSync = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        Wake();
    }

    /// <summary>
    /// Who may take over from a default leg that leaves: an alive leg, and only while every region is in sync (then
    /// it holds everything); null otherwise. Under the leg lock.
    /// </summary>
    private MirrorLeg? NextDefaultLocked(MirrorLeg leaving)
        => _log.SyncCount == RegionCount ? _legs.FirstOrDefault(l => l != leaving && l.IsAlive) : null;

    /// <summary>Stale legs are current once every region is in sync and no leg is dead.</summary>
    private void PromoteStaleLegs()
    {
        if (_log.SyncCount != RegionCount || _regions.RecoveringRegions > 0) return;
        lock (_legLock)
        {
            if (_legs.Any(l => l.Health is LegHealth.Dead or LegHealth.Hung) || !_legs.Any(l => l.Health == LegHealth.Stale)) return;
            foreach (var leg in _legs.Where(l => l.Health == LegHealth.Stale)) leg.SetHealth(LegHealth.Alive);
            RecordLegsLocked();
        }
        TryFlushLog(includeClears: false);
    }

    private void RecordLegsLocked() => _log.RecordLegs(_legs.Select(l => l.ToLogLeg()).ToArray(), _defaultLeg);

    /// <summary>
    /// Flushes every leg that takes writes and waits (bounded: a hung leg must not hang the mirror). A leg whose
    /// flush fails dies. True when all of them flushed.
    /// </summary>
    private bool FlushLegs()
    {
        var legs = _legs.Where(l => l.TakesWrites).ToArray();
        if (legs.Length == 0) return false;
        var flush = new LegFlush(legs.Length);
        // Timed like every leg request: a leg that hangs on it times out, and the flush ends then, failed on that leg.
        foreach (var leg in legs) SubmitToLeg(leg, flush, BlockOperation.Flush, 0, 0, IoBuffers.None);
        if (!flush.Wait(LegFlushTimeout))
        {
            Warn($"Flushing the legs took longer than {LegFlushTimeout.TotalSeconds:0} s; regions stay marked dirty in the log.");
            return false;
        }
        if (flush.FailedLegs == 0) return true;
        foreach (var leg in LegsIn(flush.FailedLegs)) FailLeg(leg, "a flush", Errno.EIO);
        TryFlushLog(includeClears: false);
        return false;
    }

    private void Warn(string message)
    {
        lock (_warnings)
        {
            if (_warnings.Count == MaxWarnings) _warnings.Dequeue();
            _warnings.Enqueue($"{DateTime.UtcNow:yyyy-MM-dd HH:mm:ss}Z {message}");
            _warningCount++;
        }
    }

    /// <summary>Every leg, as a mask; a write that reached fewer leaves its region out of sync.</summary>
    private ulong AllLegs => (1UL << _legs.Length) - 1;

    private ulong LegsTakingWrites()
    {
        ulong mask = 0;
        foreach (var leg in _legs)
            if (leg.TakesWrites) mask |= leg.Bit;
        return mask;
    }

    private IEnumerable<MirrorLeg> LegsIn(ulong mask)
    {
        for (int i = 0; i < _legs.Length; i++)
            if ((mask & (1UL << i)) != 0) yield return _legs[i];
    }

    /// <summary>Counts down the legs' flushes; waited on by the daemon or Dispose, never by an I/O thread.</summary>
    private sealed class LegFlush(int legs) : IBlockCompletion
    {
        private readonly CountdownEvent _left = new(legs);
        private long _failed;

        public ulong FailedLegs => (ulong)Interlocked.Read(ref _failed);

        public void Completed(int tag, int error)
        {
            if (error != 0) Interlocked.Or(ref _failed, 1L << tag);
            _left.Signal();
        }

        public bool Wait(TimeSpan timeout) => _left.Wait(timeout);
    }
}
