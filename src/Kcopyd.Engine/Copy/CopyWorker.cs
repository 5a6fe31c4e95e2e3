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
    /// never written, so no destination receives data that was not read. With -Verify, written chunks are
    /// re-read from each destination (Verify) and compared on the worker (Compare), which then re-reads the next.
    /// </summary>
    public void IoDone(SubJob job)
    {
        var next = job.Phase switch
        {
            SubJobPhase.Read when !job.HasError => SubJobPhase.Write,
            SubJobPhase.Write when job.Master.Request.Verify && !job.ReadError => SubJobPhase.Verify,
            SubJobPhase.Verify => SubJobPhase.Compare,
            _ => (SubJobPhase?)null,
        };
        if (next is { } phase)
        {
            job.Phase = phase;
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
    /// starve it. Two kinds need nothing it waits for and go on: a chunk of a stopping job, which ends, and a write
    /// (or a -Verify re-read), which the throttle never holds; held behind a throttled read, it would keep its pages (and a mirror its region
    /// in recovery) for a whole throttle delay.
    /// </summary>
    private void ProcessJobs(JobList jobs, Func<SubJob, StageResult> stage)
    {
        bool waiting = false, deferred = false;
        while (Pop(jobs) is { } job)
        {
            if (waiting && !job.Master.ShouldStopIssuing && !job.IsPastRead)
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

    /// <summary>
    /// Takes every page the chunk needs, or none (no partial holds, so jobs cannot starve each other). A chunk in a
    /// hole of the source is not read, so it needs pages only to be re-read by -Verify.
    /// </summary>
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
        if (job.Phase == SubJobPhase.Read || (job.IsHole && master.Request.Verify))
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

    /// <summary>Issues the chunk's next I/O: its read, its writes, a re-read; never waits for the I/O itself.</summary>
    private StageResult RunIoJob(SubJob job)
    {
        if (!job.IsPastRead)
        {
            // Nothing of this chunk is issued yet: a stopped job's chunk waiting for the throttle ends here.
            if (EndIfStopping(job)) return StageResult.Done;
            TimeSpan delay = job.Client.Throttle.DelayBeforeStart(job.LengthBytes);
            if (delay > TimeSpan.Zero)
            {
                WakeAfter(delay);
                return StageResult.Retry;
            }
        }
        switch (job.Phase)
        {
            case SubJobPhase.Read: IssueRead(job); break;
            case SubJobPhase.Zero: IssueZeroing(job); break;
            case SubJobPhase.Write: IssueWrites(job); break;
            case SubJobPhase.Compare: CompareReRead(job); break;
            case SubJobPhase.Verify: IssueReRead(job); break;
        }
        return StageResult.Done;
    }

    private static void IssueRead(SubJob job)
    {
        var request = job.Master.Request;
        job.BeginIo(1);
        Issue(job, request.Source!, BlockOperation.Read, request.SourceOffsetBytes + job.RelativeOffsetBytes, job.LengthBytes, job.Buffers, 0);
        job.ReleaseIssuer();
    }

    /// <summary>A zeroing job's chunk (Clear-Region): the devices' zero-range fast path, no pages.</summary>
    private static void IssueZeroing(SubJob job)
    {
        var destinations = job.Master.Request.Destinations;
        job.DataBytes = job.LengthBytes;
        job.BeginIo(destinations.Count);
        for (int i = 0; i < destinations.Count; i++)
            Issue(job, destinations[i].Device, BlockOperation.WriteZeroes, destinations[i].OffsetBytes + job.RelativeOffsetBytes, job.LengthBytes, IoBuffers.None, i);
        job.ReleaseIssuer();
    }

    /// <summary>
    /// Writes the chunk to every destination. It is hashed first for -Verify; when zeroes are looked for, each run
    /// of all-zero pages is zeroed on the destinations (-Sparse) or left alone (-DestinationIsZero) and the runs
    /// between are written as data.
    /// </summary>
    private static void IssueWrites(SubJob job)
    {
        var request = job.Master.Request;
        if (request.Verify && !job.IsHole) job.SourceHash = job.HashPages();
        if (request.DetectsZeroes && !job.IsHole) job.FindZeroPages();
        // A hole is one run of zeros, whatever its length; other chunks go in runs of 64 KiB pages.
        int pageSize = job.IsHole ? (int)job.LengthBytes : job.Client.Pages.PageSizeBytes;
        int pages = job.IsHole ? 1 : (int)((job.LengthBytes + pageSize - 1) / pageSize);
        if (job.IsHole) job.ZeroPages[0] = true;
        var destinations = request.Destinations;

        int ios = 0;
        for (int first = 0, end; first < pages; first = end)
        {
            end = RunEnd(job, first, pages);
            if (!(job.ZeroPages[first] && request.DestinationIsZero)) ios += destinations.Count;
        }
        job.BeginIo(ios);
        for (int first = 0, end; first < pages; first = end)
        {
            end = RunEnd(job, first, pages);
            long offset = (long)first * pageSize;
            long length = Math.Min((long)end * pageSize, job.LengthBytes) - offset;
            bool zero = job.ZeroPages[first];
            if (zero && request.DestinationIsZero)
            {
                job.SkippedBytes += length;
                continue;
            }
            if (zero) job.ZeroedBytes += length;
            else job.DataBytes += length;
            var operation = zero ? BlockOperation.PunchZeroes : BlockOperation.Write;
            var buffers = zero ? IoBuffers.None : job.BuffersOf(first, end - first);
            for (int i = 0; i < destinations.Count; i++)
                Issue(job, destinations[i].Device, operation, destinations[i].OffsetBytes + job.RelativeOffsetBytes + offset, length, buffers, i);
        }
        job.ReleaseIssuer();
    }

    /// <summary>The end of the run of pages that are all zero, or all not, from <paramref name="first"/>.</summary>
    private static int RunEnd(SubJob job, int first, int pages)
    {
        int end = first + 1;
        while (end < pages && job.ZeroPages[end] == job.ZeroPages[first]) end++;
        return end;
    }

    /// <summary>
    /// Re-reads the chunk from the next destination whose write did not fail, into the chunk's own pages (the
    /// source's hash is kept, so no more pages are needed); after the last one the chunk is done.
    /// </summary>
    private void IssueReRead(SubJob job)
    {
        var destinations = job.Master.Request.Destinations;
        while (job.VerifyIndex < destinations.Count && (job.WriteErrorMask & (1UL << job.VerifyIndex)) != 0) job.VerifyIndex++;
        if (job.VerifyIndex == destinations.Count)
        {
            Push(_completeJobs, job);
            Wake(); // the complete list was already run in this pass
            return;
        }
        var destination = destinations[job.VerifyIndex];
        job.VerifyReadFailed = false;
        job.PoisonPages();
        job.BeginIo(1);
        Issue(job, destination.Device, BlockOperation.Read, destination.OffsetBytes + job.RelativeOffsetBytes, job.LengthBytes, job.Buffers, job.VerifyIndex);
        job.ReleaseIssuer();
    }

    /// <summary>Compares what one destination gave back with the source (zeros for a hole), then goes on to the next.</summary>
    private void CompareReRead(SubJob job)
    {
        bool same = !job.VerifyReadFailed && (job.IsHole ? job.PagesAreZero() : job.HashPages() == job.SourceHash);
        if (!same) job.Mismatched = true;
        if (!same) job.Master.AddMismatch(job.VerifyIndex, job.RelativeOffsetBytes, job.LengthBytes, job.VerifyReadFailed);
        job.VerifyIndex++;
        job.Phase = SubJobPhase.Verify;
        IssueReRead(job);
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

    private static void Issue(SubJob job, Devices.IBlockDevice device, BlockOperation operation, long offsetBytes, long lengthBytes, IoBuffers buffers, int tag)
    {
        var client = job.Client;
        client.Throttle.IoStarted();
        job.Master.IoIssued();
        try
        {
            // This may block, e.g. in a mirror's request pool: only this client's worker waits.
            device.Submit(new BlockRequest(operation, offsetBytes, lengthBytes, buffers, job, tag), client.Queue);
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
