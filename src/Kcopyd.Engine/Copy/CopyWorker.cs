using System.Diagnostics;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Copy;

/// <summary>
/// The thread that moves sub-jobs through their lives, with the three lists it works from (dm-kcopyd's
/// <c>pages_jobs</c>, <c>io_jobs</c>, <c>complete_jobs</c>) under one lock. Every client owns one; sharing one
/// between clients recreates the pre-patch kcopyd, which only the deadlock tests do.
/// </summary>
internal sealed class CopyWorker : IDisposable
{
    /// <summary>Retry: the job waits, and the jobs behind it with it. Deferred: it waits alone (its own rate limit).</summary>
    private enum StageResult { Done, Retry, Deferred }

    private readonly object _jobLock = new();
    private readonly JobList _completeJobs = new();
    private readonly JobList _pagesJobs = new();
    private readonly JobList _ioJobs = new();
    private readonly JobList _waiting = new(); // the worker thread's alone, within one ProcessJobs: no lock
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly Thread _thread;
    private volatile bool _stopping;
    private long _wakeAtTimestamp;    // a throttled job asked to run again at this time

    public CopyWorker(string name)
    {
        Name = name;
        _thread = new Thread(Run) { IsBackground = true, Name = $"kcopyd/{name}" };
        _thread.Start();
    }

    public string Name { get; }

    public int ManagedThreadId => _thread.ManagedThreadId;

    public bool ListsAreEmpty
    {
        get { lock (_jobLock) return _completeJobs.IsEmpty && _pagesJobs.IsEmpty && _ioJobs.IsEmpty; }
    }

    /// <summary>Queues a new or re-armed sub-job and wakes the worker (dispatch_job).</summary>
    public void Dispatch(SubJob job)
    {
        Push(_pagesJobs, job);
        Wake();
    }

    public void Wake() => _wake.Set();

    /// <summary>
    /// All I/O of one phase is done (complete_io), on an I/O thread: move the job on and wake the worker.
    /// A failed phase goes straight to completion unless the job ignores errors; a chunk whose read failed is
    /// never written, so no destination receives data that was not read.
    /// </summary>
    public void IoDone(SubJob job)
    {
        if (job.Phase == SubJobPhase.Read && !job.HasError)
        {
            job.Phase = SubJobPhase.Write;
            Push(_ioJobs, job);
        }
        else
        {
            Push(_completeJobs, job);
        }
        Wake();
    }

    private void Run()
    {
        while (!_stopping)
        {
            long wakeAt = Interlocked.Exchange(ref _wakeAtTimestamp, 0);
            int timeoutMs = wakeAt == 0 ? Timeout.Infinite
                : (int)Math.Clamp(Math.Ceiling(Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), wakeAt).TotalMilliseconds), 0, int.MaxValue);
            _wake.Wait(timeoutMs);
            _wake.Reset();
            DoWork();
        }
    }

    /// <summary>
    /// The order matters: completed jobs free pages for jobs waiting on pages, and jobs that get pages join the
    /// io list in this same pass. I/O completions wake the worker and it all starts again (do_work).
    /// </summary>
    private void DoWork()
    {
        ProcessJobs(_completeJobs, RunCompleteJob);
        ProcessJobs(_pagesJobs, RunPagesJob);
        ProcessJobs(_ioJobs, RunIoJob);
    }

    /// <summary>
    /// A job that must wait (out of pages, or throttled) keeps its place, and the jobs behind it theirs, so none can
    /// starve it. Two kinds need nothing it waits for and go on: a chunk of a stopping job, which ends, and a write,
    /// which the throttle never holds; held behind a throttled read, it would keep its pages (and a mirror its region
    /// in recovery) for a whole throttle delay.
    /// </summary>
    private void ProcessJobs(JobList jobs, Func<SubJob, StageResult> stage)
    {
        bool waiting = false, deferred = false;
        while (Pop(jobs) is { } job)
        {
            if (waiting && !job.Master.ShouldStopIssuing && job.Phase != SubJobPhase.Write)
            {
                _waiting.PushTail(job);
                continue;
            }
            switch (stage(job))
            {
                case StageResult.Retry:
                    waiting = true; // try again when woken
                    _waiting.PushTail(job);
                    break;
                case StageResult.Deferred:
                    deferred = true; // only this job waits: the ones behind it go on
                    _waiting.PushTail(job);
                    break;
            }
        }
        if (!waiting && !deferred) return;
        lock (_jobLock) jobs.PushHeadAll(_waiting);
    }

    /// <summary>Wakes the worker after <paramref name="delay"/> at the latest; the earliest of several such asks wins.</summary>
    private void WakeAfter(TimeSpan delay)
    {
        long at = Stopwatch.GetTimestamp() + (long)(delay.TotalSeconds * Stopwatch.Frequency);
        long seen = Volatile.Read(ref _wakeAtTimestamp);
        while (seen == 0 || at < seen)
        {
            long found = Interlocked.CompareExchange(ref _wakeAtTimestamp, at, seen);
            if (found == seen) return;
            seen = found;
        }
    }

    /// <summary>Gives the pages back and lets the job hand out its next chunk or finish.</summary>
    private StageResult RunCompleteJob(SubJob job)
    {
        var client = job.Client;
        var master = job.Master;
        if (job.PageCount > 0) client.Pages.Return(job.DetachPages());
        bool rearmed = master.SubJobFinished(job, out bool jobFinished);
        if (rearmed) Push(_pagesJobs, job);
        else client.ReturnSubJob(job);
        if (jobFinished) master.Finish();
        return StageResult.Done;
    }

    /// <summary>Takes every page the chunk needs, or none (no partial holds, so jobs cannot starve each other).</summary>
    private StageResult RunPagesJob(SubJob job)
    {
        var master = job.Master;
        if (EndIfStopping(job)) return StageResult.Done;
        // A job over its own rate waits here, before it takes pages: it holds nothing the client's other jobs need.
        if (master.Throttle?.DelayBeforeStart(job.LengthBytes) is { } own && own > TimeSpan.Zero)
        {
            WakeAfter(own);
            return StageResult.Deferred;
        }
        if (job.Phase != SubJobPhase.Zero)
        {
            var pool = job.Client.Pages;
            int needed = (int)((job.LengthBytes + pool.PageSizeBytes - 1) / pool.PageSizeBytes);
            if (!pool.TryTake(needed, job.Pages)) return StageResult.Retry;
            job.AttachPages(needed, pool.PageSizeBytes, pool.AddressOf);
        }
        master.MarkRunning();
        Push(_ioJobs, job);
        return StageResult.Done;
    }

    /// <summary>Issues the chunk's read, or its writes to every destination. Never waits for the I/O itself.</summary>
    private StageResult RunIoJob(SubJob job)
    {
        var client = job.Client;
        var master = job.Master;
        if (job.Phase != SubJobPhase.Write)
        {
            // Nothing of this chunk is issued yet: a stopped job's chunk waiting for the throttle ends here.
            if (EndIfStopping(job)) return StageResult.Done;
            TimeSpan delay = client.Throttle.DelayBeforeStart(job.LengthBytes);
            if (delay > TimeSpan.Zero)
            {
                WakeAfter(delay);
                return StageResult.Retry;
            }
        }

        var destinations = master.Request.Destinations;
        if (job.Phase == SubJobPhase.Read)
        {
            job.BeginIo(1);
            Issue(job, master.Request.Source!, BlockOperation.Read, master.Request.SourceOffsetBytes, 0);
        }
        else
        {
            var operation = job.Phase == SubJobPhase.Zero ? BlockOperation.WriteZeroes : BlockOperation.Write;
            job.BeginIo(destinations.Count);
            for (int i = 0; i < destinations.Count; i++)
                Issue(job, destinations[i].Device, operation, destinations[i].OffsetBytes, i);
        }
        job.ReleaseIssuer();
        return StageResult.Done;
    }

    /// <summary>Ends a chunk that has issued nothing when its job stops issuing; true when it did.</summary>
    private bool EndIfStopping(SubJob job)
    {
        if (!job.Master.ShouldStopIssuing) return false;
        job.Skipped = true;
        Push(_completeJobs, job);
        Wake(); // the complete list was already run in this pass: without a wake the job would never end
        return true;
    }

    private static void Issue(SubJob job, Devices.IBlockDevice device, BlockOperation operation, long baseOffsetBytes, int tag)
    {
        var client = job.Client;
        client.Throttle.IoStarted();
        var buffers = operation == BlockOperation.WriteZeroes ? IoBuffers.None : job.Buffers;
        try
        {
            // This may block, e.g. in a mirror's request pool: only this client's worker waits.
            device.Submit(new BlockRequest(operation, baseOffsetBytes + job.RelativeOffsetBytes, job.LengthBytes, buffers, job, tag), client.Queue);
        }
        catch (Exception)
        {
            // A device that cannot take the request (closed, torn down) fails this I/O, not the client's worker.
            job.Completed(tag, Native.Errno.EIO);
        }
    }

    private SubJob? Pop(JobList jobs)
    {
        lock (_jobLock) return jobs.PopHead();
    }

    private void Push(JobList jobs, SubJob job)
    {
        lock (_jobLock) jobs.PushTail(job);
    }

    public void Dispose()
    {
        _stopping = true;
        _wake.Set();
        if (Thread.CurrentThread != _thread) _thread.Join();
        _wake.Dispose(); // Set stays harmless afterwards: CopyJob.Stop may wake a worker its client just disposed
    }
}
