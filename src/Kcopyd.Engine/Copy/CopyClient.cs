using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Memory;
using Microsoft.Extensions.ObjectPool;

namespace Kcopyd.Engine.Copy;

/// <summary>
/// A kcopyd client (dm_kcopyd_client). It owns everything on its I/O path: a worker thread with its job lists
/// and lock, a bounded pool of aligned pages, a pool of sub-jobs, an I/O queue and a throttle. Nothing there is
/// shared with another client, so a client blocked inside one device can never stall another client's progress.
/// </summary>
public sealed class CopyClient : IDisposable
{
    private const int MaxRetainedSubJobs = 1024;
    private readonly object _stateLock = new();
    private readonly ManualResetEventSlim _idle = new(true);
    private readonly bool _ownsWorker;
    private readonly SubJobPolicy _subJobPolicy;
    private readonly ObjectPool<SubJob> _subJobs;
    private int _activeJobs;
    private bool _disposed;

    public CopyClient(CopyClientOptions? options = null) : this(options, sharedWorker: null)
    {
    }

    /// <summary>
    /// With <paramref name="sharedWorker"/>, the client's jobs run on a worker another client also uses: the
    /// single kcopyd thread the seed patch removed. It exists only so tests can show that design deadlocks.
    /// </summary>
    internal CopyClient(CopyClientOptions? options, CopyWorker? sharedWorker)
    {
        Options = options ?? new CopyClientOptions();
        Options.Validate();
        Pages = new PagePool(Options.PageCount, Options.PageSizeBytes);
        int maxPagesPerSubJob = Options.SubJobSizeBytes / Options.PageSizeBytes;
        // SubJob is IDisposable, so the provider's pool frees the native vectors of sub-jobs it drops or holds.
        _subJobPolicy = new SubJobPolicy(maxPagesPerSubJob);
        // Keep enough for bursts of many small jobs (each is one sub-job); a sub-job is a few hundred bytes.
        _subJobs = new DefaultObjectPoolProvider { MaximumRetained = MaxRetainedSubJobs }.Create(_subJobPolicy);
        Queue = IoQueueFactory.Create(Options.Name, Options.IoDepth, Options.IoBackend);
        _ownsWorker = sharedWorker == null;
        Worker = sharedWorker ?? new CopyWorker(Options.Name);
        Throttle.Changed = Worker.Wake;
    }

    public string Name => Options.Name;

    public CopyClientOptions Options { get; }

    public CopyThrottle Throttle { get; } = new();

    public int PageCount => Pages.PageCount;

    public int FreePages => Pages.FreePages;

    /// <summary>Jobs started and not yet ended.</summary>
    public int ActiveJobs => Volatile.Read(ref _activeJobs);

    /// <summary>"io_uring" or "blocking".</summary>
    public string IoBackend => Queue.Backend;

    internal PagePool Pages { get; }

    internal IIoQueue Queue { get; }

    internal CopyWorker Worker { get; }

    /// <summary>Sub-jobs ever allocated: stays small however many jobs run, because the pool reuses them.</summary>
    internal int SubJobsCreated => _subJobPolicy.Created;

    /// <summary>Validates the request, then starts it. The job runs on this client's worker.</summary>
    public CopyJob Copy(CopyRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        request.Validate();
        var job = new CopyJob(this, request);
        lock (_stateLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_activeJobs++ == 0) _idle.Reset();
        }
        job.Start();
        return job;
    }

    /// <summary>Zeroes a region on each destination, using the device's zero-range fast path where it has one.</summary>
    public CopyJob Zero(IReadOnlyList<CopyDestination> destinations, long lengthBytes, Action<CopyJob>? completed = null)
        => Copy(new CopyRequest { Destinations = destinations, LengthBytes = lengthBytes, Completed = completed });

    internal SubJob RentSubJob() => _subJobs.Get();

    internal void ReturnSubJob(SubJob job) => _subJobs.Return(job);

    internal void JobEnded()
    {
        lock (_stateLock)
        {
            if (--_activeJobs == 0) _idle.Set();
        }
    }

    /// <summary>
    /// Waits for every job to end (dm_kcopyd_client_destroy), checks nothing is left on the lists, then stops the
    /// worker and frees the pages. New jobs are refused from the start.
    /// </summary>
    public void Dispose()
    {
        lock (_stateLock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _idle.Wait();
        if (_ownsWorker)
        {
            Worker.Dispose();
            if (!Worker.ListsAreEmpty) throw new InvalidOperationException($"Copy client '{Name}' ended with jobs still on its lists.");
        }
        Queue.Dispose();
        Pages.Dispose();
        (_subJobs as IDisposable)?.Dispose();
        _idle.Dispose();
    }

    private sealed class SubJobPolicy(int maxPages) : PooledObjectPolicy<SubJob>
    {
        private int _created;

        public int Created => Volatile.Read(ref _created);

        public override SubJob Create()
        {
            Interlocked.Increment(ref _created);
            return new SubJob(maxPages);
        }

        public override bool Return(SubJob job)
        {
            job.Reset();
            return true;
        }
    }
}
