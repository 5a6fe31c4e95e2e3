using System.Collections.Concurrent;
using Kcopyd.Engine.Copy;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Registry;

/// <summary>
/// The host's copy jobs: running ones live, finished ones as snapshots in a history bounded by count and age,
/// so memory stays flat however many jobs run. A finished job keeps nothing of its devices or client.
/// </summary>
internal sealed class JobTable
{
    private sealed class Entry(CopyJob job)
    {
        public volatile CopyJob? Live = job;
        public volatile CopyJobInfo? Final;
        public int Sealed;

        // Live is read first: Seal writes Final before it clears Live, so a null Live means Final is there.
        public CopyJobInfo Snapshot()
        {
            var live = Live;
            return Final ?? CopyJobInfo.Of(live!);
        }
    }

    private readonly ConcurrentDictionary<long, Entry> _jobs = new();
    // Finished jobs in the order they ended, so trimming takes the oldest without sorting the table.
    private readonly Queue<(long Id, DateTime EndTime)> _finished = new();
    private readonly object _pruneLock = new();
    // Jobs a cmdlet follows (-Wait, Wait-CopyJob): they stay until it has seen them end, however small the history.
    private readonly Dictionary<long, int> _pins = [];
    private readonly HashSet<long> _trimmedWhilePinned = [];

    public int HistoryCount { get; set; } = 1000;

    public TimeSpan HistoryMaxAge { get; set; } = TimeSpan.FromHours(24);

    public int Count => _jobs.Count;

    public int RunningCount => _jobs.Values.Count(e => e.Final == null);

    /// <summary>
    /// Keeps a started job; when it ends, only its snapshot stays, and the history is trimmed. Pinned (see
    /// <see cref="Pin"/>) before it can end, when a cmdlet is going to follow it.
    /// </summary>
    public void Add(CopyJob job, bool pin = false)
    {
        var entry = new Entry(job);
        if (pin) Pin(job.Id);
        _jobs[job.Id] = entry;
        job.WaitAsync().ContinueWith(_ => Seal(entry, job), TaskScheduler.Default);
    }

    /// <summary>
    /// Makes an ended job a snapshot in the history, once: when its task completes, or sooner when a caller has seen it
    /// end (WaitJob answered it, a list showed it), so the list never shows more than the history holds.
    /// </summary>
    private void Seal(Entry entry, CopyJob job)
    {
        if (Interlocked.Exchange(ref entry.Sealed, 1) != 0) return;
        entry.Final = CopyJobInfo.Of(job);
        entry.Live = null;
        lock (_pruneLock) _finished.Enqueue((job.Id, entry.Final.EndTime ?? DateTime.Now));
        Prune();
    }

    /// <summary>Seals the job if it has ended (see <see cref="Seal(Entry, CopyJob)"/>).</summary>
    public void SealIfEnded(long id)
    {
        if (_jobs.TryGetValue(id, out var entry) && entry.Live is { } job && IsEnded(job)) Seal(entry, job);
    }

    private static bool IsEnded(CopyJob job) => job.State is CopyJobState.Completed or CopyJobState.Failed or CopyJobState.Stopped;

    public IEnumerable<CopyJobInfo> List()
    {
        foreach (var (id, entry) in _jobs)
            if (entry.Live is { } job && IsEnded(job)) Seal(entry, job);
        Prune(); // jobs past the age leave even when no job has ended since
        return _jobs.Values.Select(e => e.Snapshot()).OrderBy(j => j.Id).ToArray();
    }

    public CopyJobInfo? Find(long id) => _jobs.TryGetValue(id, out var e) ? e.Snapshot() : null;

    /// <summary>The running job, or null when it ended (or never was).</summary>
    public CopyJob? FindLive(long id) => _jobs.TryGetValue(id, out var e) ? e.Live : null;

    public IEnumerable<CopyJob> Running => _jobs.Values.Select(e => e.Live).OfType<CopyJob>().ToArray();

    /// <summary>Drops a finished job from the history; a running one is not dropped (false).</summary>
    public bool Remove(long id)
    {
        if (!_jobs.TryGetValue(id, out var e) || e.Final == null) return false;
        return _jobs.TryRemove(id, out _);
    }

    /// <summary>Finished jobs beyond the count, or older than the age, leave the history (oldest first).</summary>
    public void Prune()
    {
        lock (_pruneLock)
        {
            var cutoff = DateTime.Now - HistoryMaxAge;
            while (_finished.Count > 0)
            {
                var (id, endTime) = _finished.Peek();
                // Ids of jobs Remove-CopyJob dropped are still queued: they count until they reach the front.
                if (_finished.Count <= HistoryCount && endTime >= cutoff && _jobs.ContainsKey(id)) break;
                _finished.Dequeue();
                if (_pins.ContainsKey(id)) _trimmedWhilePinned.Add(id);
                else _jobs.TryRemove(id, out _);
            }
        }
    }

    /// <summary>Keeps the job listed, even past the history's bounds, until as many Unpins as Pins.</summary>
    public void Pin(long id)
    {
        lock (_pruneLock) _pins[id] = _pins.GetValueOrDefault(id) + 1;
    }

    public void Unpin(long id)
    {
        lock (_pruneLock)
        {
            if (!_pins.TryGetValue(id, out int count)) return;
            if (count > 1)
            {
                _pins[id] = count - 1;
                return;
            }
            _pins.Remove(id);
            // The history let it go while it was followed: it goes now.
            if (_trimmedWhilePinned.Remove(id)) _jobs.TryRemove(id, out _);
        }
    }
}
