using System.Diagnostics;
using Kcopyd.Engine.Copy;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// The recovery (do_recovery): the log hands out out-of-sync regions one pass from start to end; each is marked
/// recovering, waits until its writes in flight drain (new ones are held), then is copied from the default leg
/// to the other live legs by one job on the mirror's own copy client. The job's end only queues the region; the
/// daemon then records it in the log and releases the held writes.
/// </summary>
public sealed partial class MirrorDevice
{
    private readonly Dictionary<long, CopyJob> _recoveryJobs = new();
    private volatile bool _recoveryStopped;
    private long _recoveredBytes;
    private long _recoveredRegions;
    private long _recoveryStartTimestamp;
    private long _recoveryEndTimestamp;
    private long _recoveryRetryTimestamp;
    private volatile bool _recoveryFailedInPass;
    private TimeSpan _recoveryRetryDelay = RecoveryRetryFirst;
    private static readonly TimeSpan RecoveryRetryFirst = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan RecoveryRetryLast = TimeSpan.FromSeconds(30);

    private void DoRecovery()
    {
        if (!_recoveryStopped)
        {
            RetryFailedRecovery();
            while (_regions.RecoveringRegions < _options.RecoveryRegionsInFlight && _log.TryGetResyncWork(out long region))
            {
                if (Interlocked.Read(ref _recoveryStartTimestamp) == 0) Interlocked.Exchange(ref _recoveryStartTimestamp, Stopwatch.GetTimestamp());
                _regions.BeginRecovery(region);
            }
            // A pass that ended with regions still out of sync, and nothing dead to explain it, is run again.
            if (_regions.RecoveringRegions == 0 && _log.SyncCount < RegionCount && LegsTakingWrites() == AllLegs)
                _recoveryFailedInPass = true;
        }
        foreach (long region in _regions.TakeQuiesced())
        {
            if (HandToScrub(region)) continue;
            if (_recoveryStopped) _regions.RecoveryCopied(region, success: false);
            else StartRecoveryCopy(region);
        }
        // Regions ended just above (stopped, or nothing to copy to) are finished in this same pass.
        EndRecoveredRegions();
    }

    private void StartRecoveryCopy(long region)
    {
        var source = DefaultLeg;
        var destinations = _legs.Where(l => l.TakesWrites && l != source).ToArray();
        long offset = region * RegionSizeBytes;
        if (!source.IsAlive || destinations.Length == 0)
        {
            _regions.RecoveryCopied(region, success: false);
            return;
        }
        try
        {
            var job = Client.Copy(new CopyRequest
            {
                // Timed like the mirror's own leg I/O: a leg hanging under a recovery copy is failed as Hung.
                Source = new TimedLeg(this, source),
                SourceOffsetBytes = offset,
                Destinations = destinations.Select(l => new CopyDestination(new TimedLeg(this, l), offset)).ToArray(),
                LengthBytes = Math.Min(RegionSizeBytes, SizeBytes - offset),
                Internal = true,
                Completed = job => RecoveryCopied(region, job, source, destinations),
            });
            lock (_recoveryJobs) _recoveryJobs[region] = job;
            _options.InternalJobStarted?.Invoke(job);
        }
        catch (ObjectDisposedException)
        {
            _regions.RecoveryCopied(region, success: false);
        }
    }

    /// <summary>
    /// On the copy client's worker (recovery_complete): a failed write kills its destination. A failed read of
    /// the default leg does not: it is the only leg holding the region, so the region stays out of sync (its
    /// reads fail) and the recovery tries it again later, in case the error was passing.
    /// </summary>
    private void RecoveryCopied(long region, CopyJob job, MirrorLeg source, MirrorLeg[] destinations)
    {
        if (job.ReadError)
        {
            source.CountReadError();
            Warn($"Reading region {region} from the default leg '{source.Name}' failed ({Native.Errno.DescribeNamed(job.ReadErrno)}); the region stays out of sync and is tried again.");
        }
        ulong failed = job.WriteErrorMask;
        for (int i = 0; i < destinations.Length; i++)
            if ((failed & (1UL << i)) != 0) FailLeg(destinations[i], $"a recovery copy of region {region}", job.WriteErrno);
        if (job.State != CopyJobState.Completed && !_recoveryStopped) _recoveryFailedInPass = true;
        Interlocked.Add(ref _recoveredBytes, job.BytesCopied);
        _regions.RecoveryCopied(region, job.State == CopyJobState.Completed);
        Wake();
    }

    /// <summary>A region is in sync only when the copy reached every leg; its held writes go back to the front of the queue.</summary>
    private void EndRecoveredRegions()
    {
        foreach (var (region, copied) in _regions.TakeRecovered())
        {
            bool wasCopy;
            lock (_recoveryJobs) wasCopy = _recoveryJobs.Remove(region);
            bool inSync = copied && LegsTakingWrites() == AllLegs;
            if (inSync && wasCopy) Interlocked.Increment(ref _recoveredRegions);
            if (inSync) _recoveryRetryDelay = RecoveryRetryFirst; // progress: the next retry need not wait long
            var held = _regions.EndRecovery(region, inSync);
            lock (_queueLock) _writes.InsertRange(0, held);
            Interlocked.Exchange(ref _recoveryEndTimestamp, Stopwatch.GetTimestamp());
        }
    }

    /// <summary>
    /// When a pass ended with regions that failed, another pass starts after a delay that doubles up to 30 s,
    /// so a passing error (a leg that failed reads for a second) still ends in sync.
    /// </summary>
    private void RetryFailedRecovery()
    {
        if (!_recoveryFailedInPass || _regions.RecoveringRegions > 0) return;
        long now = Stopwatch.GetTimestamp();
        long at = Interlocked.Read(ref _recoveryRetryTimestamp);
        if (at == 0)
        {
            Interlocked.Exchange(ref _recoveryRetryTimestamp, now + (long)(_recoveryRetryDelay.TotalSeconds * Stopwatch.Frequency));
            _recoveryRetryDelay = TimeSpan.FromTicks(Math.Min(_recoveryRetryDelay.Ticks * 2, RecoveryRetryLast.Ticks));
            return;
        }
        if (now < at) return;
        Interlocked.Exchange(ref _recoveryRetryTimestamp, 0);
        _recoveryFailedInPass = false;
        _log.RestartResync();
    }

    private long RecoveryRate()
    {
        long start = Interlocked.Read(ref _recoveryStartTimestamp);
        if (start == 0) return 0;
        long end = _regions.RecoveringRegions > 0 ? Stopwatch.GetTimestamp() : Interlocked.Read(ref _recoveryEndTimestamp);
        double seconds = Stopwatch.GetElapsedTime(start, Math.Max(end, start)).TotalSeconds;
        return seconds > 0 ? (long)(Interlocked.Read(ref _recoveredBytes) / seconds) : 0;
    }

    private void PauseRecovery() => StopRecovery();

    /// <summary>No new region starts; running copies stop after their chunks in flight and their regions stay out of sync.</summary>
    private void StopRecovery()
    {
        _recoveryStopped = true;
        CopyJob[] jobs;
        lock (_recoveryJobs) jobs = _recoveryJobs.Values.ToArray();
        foreach (var job in jobs) job.Stop();
        Wake();
        foreach (var job in jobs) job.Wait(Timeout.InfiniteTimeSpan);
    }
}
