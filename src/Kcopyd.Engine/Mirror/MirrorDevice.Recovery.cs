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

    private void DoRecovery()
    {
        if (!_recoveryStopped)
        {
            while (_regions.RecoveringRegions < _options.RecoveryRegionsInFlight && _log.TryGetResyncWork(out long region))
            {
                if (Interlocked.Read(ref _recoveryStartTimestamp) == 0) Interlocked.Exchange(ref _recoveryStartTimestamp, Stopwatch.GetTimestamp());
                _regions.BeginRecovery(region);
            }
        }
        foreach (long region in _regions.TakeQuiesced())
        {
            if (_recoveryStopped) _regions.RecoveryCopied(region, success: false);
            else StartRecoveryCopy(region);
        }
        // Regions ended just above (stopped, or nothing to copy to) are finished in this same pass.
        EndRecoveredRegions();
    }

    private void StartRecoveryCopy(long region)
    {
        var source = DefaultLeg;
        var destinations = _legs.Where(l => l.IsAlive && l != source).ToArray();
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
                Source = source.Device,
                SourceOffsetBytes = offset,
                Destinations = destinations.Select(l => new CopyDestination(l.Device, offset)).ToArray(),
                LengthBytes = Math.Min(RegionSizeBytes, SizeBytes - offset),
                Completed = job => RecoveryCopied(region, job, source, destinations),
            });
            lock (_recoveryJobs) _recoveryJobs[region] = job;
        }
        catch (ObjectDisposedException)
        {
            _regions.RecoveryCopied(region, success: false);
        }
    }

    /// <summary>On the copy client's worker (recovery_complete): a failed read kills the default leg, a failed write its destination.</summary>
    private void RecoveryCopied(long region, CopyJob job, MirrorLeg source, MirrorLeg[] destinations)
    {
        if (job.ReadError)
        {
            source.CountReadError();
            FailLeg(source);
        }
        ulong failed = job.WriteErrorMask;
        for (int i = 0; i < destinations.Length; i++)
            if ((failed & (1UL << i)) != 0) FailLeg(destinations[i]);
        Interlocked.Add(ref _recoveredBytes, job.BytesCopied);
        _regions.RecoveryCopied(region, job.State == CopyJobState.Completed);
        Wake();
    }

    /// <summary>A region is in sync only when the copy reached every leg; its held writes go back to the front of the queue.</summary>
    private void EndRecoveredRegions()
    {
        foreach (var (region, copied) in _regions.TakeRecovered())
        {
            lock (_recoveryJobs) _recoveryJobs.Remove(region);
            bool inSync = copied && LiveLegs() == _allLegs;
            if (inSync) Interlocked.Increment(ref _recoveredRegions);
            var held = _regions.EndRecovery(region, inSync);
            lock (_queueLock) _writes.InsertRange(0, held);
            Interlocked.Exchange(ref _recoveryEndTimestamp, Stopwatch.GetTimestamp());
        }
    }

    private long RecoveryRate()
    {
        long start = Interlocked.Read(ref _recoveryStartTimestamp);
        if (start == 0) return 0;
        long end = _regions.RecoveringRegions > 0 ? Stopwatch.GetTimestamp() : Interlocked.Read(ref _recoveryEndTimestamp);
        double seconds = Stopwatch.GetElapsedTime(start, Math.Max(end, start)).TotalSeconds;
        return seconds > 0 ? (long)(Interlocked.Read(ref _recoveredBytes) / seconds) : 0;
    }

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
