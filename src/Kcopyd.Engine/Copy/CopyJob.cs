using Kcopyd.Engine.Devices;
using System.Diagnostics;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Copy;

/// <summary>
/// A region copy (or zeroing) running on a copy client. Its properties are plain values that can be read at any
/// time and are exact: BytesCopied counts the bytes that reached every destination.
/// </summary>
public sealed class CopyJob
{
    private static long s_lastId;
    private static long s_lastInternalId;

    private readonly object _lock = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly long _chunkBytes;
    private readonly long _blockBytes; // every chunk is a multiple of the largest logical block size of the devices
    private const long MinHoleBytes = 64 * 1024; // a hole shorter than this is read with the data around it
    private long _nextChunkOffset;
    private int _outstandingSubJobs;
    private long _bytesCopied;
    private long _bytesZeroed;
    private long _bytesSkipped;
    private int _ioInFlight;
    private readonly MismatchList? _mismatches;
    private readonly CopyMap? _map; // -MapPath: chunks it holds are skipped, finished ones recorded
    private ulong _writeErrorMask;
    private int _readErrno;
    private int _writeErrno;
    private volatile bool _failed;
    private volatile bool _stopRequested;
    private long _startTimestamp;
    private long _endTimestamp;
    private volatile CopyJobState _state = CopyJobState.Queued;

    internal CopyJob(CopyClient owner, CopyRequest request)
    {
        Owner = owner;
        Request = request;
        Id = request.Internal ? Interlocked.Decrement(ref s_lastInternalId) : Interlocked.Increment(ref s_lastId);
        IsZero = request.Source == null;
        _chunkBytes = IsZero ? owner.Options.ZeroChunkBytes : owner.Options.SubJobSizeBytes;
        _blockBytes = request.AlignmentBytes;
        Destination = request.Destinations.Select(d => d.Device.Name).ToArray();
        DestinationOffset = request.Destinations.Select(d => d.OffsetBytes).ToArray();
        _warningsAtStart = request.Destinations.Select(d => d.Device is IWarningSource w ? w.WarningCount : 0).ToArray();
        if (request.Verify) _mismatches = new MismatchList(Destination);
        if (request.MaxBytesPerSecond > 0) Throttle = new CopyThrottle { BytesPerSecond = request.MaxBytesPerSecond };
        if (request.MapPath != null)
        {
            // Last, so a refused map (MapMismatch) leaves nothing else to undo, and before any chunk is handed out.
            _map = CopyMap.Open(request, _chunkBytes, owner.Queue);
            _map.Start(Id);
        }
    }

    /// <summary>The job's own bandwidth limit (-BytesPerSecond of one copy), if it has one; its client's applies as well.</summary>
    internal CopyThrottle? Throttle { get; }

    /// <summary>The pieces the job goes in: the client's sub-job size for a copy, its zero chunk for a zeroing.</summary>
    public long SubJobSizeBytes => _chunkBytes;

    /// <summary>0: no limit of its own.</summary>
    public long MaxBytesPerSecond => Request.MaxBytesPerSecond;

    private readonly long[] _warningsAtStart;

    /// <summary>What went wrong on a destination while the job ran without failing it (a mirror that lost a leg).</summary>
    public string[] Warnings { get; private set; } = [];

    /// <summary>Positive for a job asked for from outside, negative for one the engine runs for itself (see <see cref="Internal"/>).</summary>
    public long Id { get; }

    /// <summary>The engine runs it for itself (a mirror's recovery copy), not for a caller.</summary>
    public bool Internal => Request.Internal;

    public string Client => Owner.Name;

    public CopyJobState State => _state;

    /// <summary>The source's name; null for a zeroing job.</summary>
    public string? Source => Request.Source?.Name;

    public long SourceOffset => Request.SourceOffsetBytes;

    public string[] Destination { get; }

    public long[] DestinationOffset { get; }

    public long BytesTotal => Request.LengthBytes;

    /// <summary>Bytes written to every destination as data.</summary>
    public long BytesCopied => Interlocked.Read(ref _bytesCopied);

    /// <summary>Bytes of zero chunks and holes of the source zeroed on every destination instead of written (-Sparse).</summary>
    public long BytesZeroed => Interlocked.Read(ref _bytesZeroed);

    /// <summary>Bytes of zero chunks and holes of the source not written at all (-DestinationIsZero).</summary>
    public long BytesSkipped => Interlocked.Read(ref _bytesSkipped);

    /// <summary>Bytes a copy map (-MapPath) held as finished by an earlier run of this copy: not read or written again.</summary>
    public long BytesFromMap => _map?.BytesHeld ?? 0;

    /// <summary>The copy map's path, null without one.</summary>
    public string? MapPath => _map?.Path;

    /// <summary>The region done so far, however its bytes went out (or an earlier run's, by the map).</summary>
    public long BytesDone => BytesCopied + BytesZeroed + BytesSkipped + BytesFromMap;

    public double PercentComplete => Math.Round(100.0 * BytesDone / BytesTotal, 2);

    /// <summary>True when the job re-reads every destination and compares it with the source.</summary>
    public bool Verify => Request.Verify;

    /// <summary>
    /// With -Verify: the ranges of a destination whose re-read differed from the source (or could not be read),
    /// merged, in the destination's own offsets; at most <see cref="MismatchList.MaxRanges"/> of them.
    /// </summary>
    public CopyMismatch[] Mismatches => _mismatches?.ToArray() ?? [];

    /// <summary>With -Verify: all the bytes that differed, also those of ranges past the listed ones.</summary>
    public long MismatchedBytes => _mismatches?.TotalBytes ?? 0;

    /// <summary>Average rate since the job started running.</summary>
    public long BytesPerSecond
    {
        get
        {
            long start = Interlocked.Read(ref _startTimestamp);
            if (start == 0) return 0;
            long end = Interlocked.Read(ref _endTimestamp);
            double seconds = Stopwatch.GetElapsedTime(start, end == 0 ? Stopwatch.GetTimestamp() : end).TotalSeconds;
            return seconds > 0 ? (long)((BytesDone - BytesFromMap) / seconds) : 0; // what this run moved
        }
    }

    public DateTime? StartTime { get; private set; }

    public DateTime? EndTime { get; private set; }

    public bool IgnoreErrors => Request.IgnoreErrors;

    /// <summary>A read of the source failed.</summary>
    public bool ReadError => Volatile.Read(ref _readErrno) != 0;

    /// <summary>Bit i is set when a write to destination i failed (kcopyd's write_err).</summary>
    public ulong WriteErrorMask { get { lock (_lock) return _writeErrorMask; } }

    /// <summary>The destinations a write failed on.</summary>
    public string[] WriteErrors
    {
        get
        {
            ulong mask = WriteErrorMask;
            return Destination.Where((_, i) => (mask & (1UL << i)) != 0).ToArray();
        }
    }

    /// <summary>What went wrong, in words; null when nothing did.</summary>
    public string? Error { get; private set; }

    /// <summary>
    /// The symbolic errno of the failure (EIO, ENOSPC, EROFS, ENXIO...): the source's read if it failed, else the first
    /// failed write's; null when no I/O failed.
    /// </summary>
    public string? ErrnoName
    {
        get
        {
            int errno = ReadErrno;
            if (errno == 0) errno = WriteErrno;
            return errno == 0 ? null : Errno.Name(errno);
        }
    }

    /// <summary>The errno of the first failed read, 0 if none.</summary>
    internal int ReadErrno => Volatile.Read(ref _readErrno);

    /// <summary>The errno of the first failed write, 0 if none.</summary>
    internal int WriteErrno { get { lock (_lock) return _writeErrno; } }

    internal CopyClient Owner { get; }

    internal CopyRequest Request { get; }

    internal bool IsZero { get; }

    /// <summary>
    /// I/O requests handed to the devices and not answered yet. A job that is Stopping waits for these: their pages
    /// may still be read from or written into by the kernel (or a device's own threads), so they are never freed first.
    /// </summary>
    public int IoInFlight => Volatile.Read(ref _ioInFlight);

    internal void IoIssued() => Interlocked.Increment(ref _ioInFlight);

    internal void IoAnswered() => Interlocked.Decrement(ref _ioInFlight);

    /// <summary>No new chunk starts: stop was asked, or a chunk failed and errors are not ignored.</summary>
    internal bool ShouldStopIssuing => _stopRequested || (_failed && !Request.IgnoreErrors);

    /// <summary>Completes when the job has ended, whatever its state.</summary>
    public Task WaitAsync(CancellationToken cancellationToken = default) => _completion.Task.WaitAsync(cancellationToken);

    /// <summary>Waits for the end of the job; false if the timeout passed first.</summary>
    public bool Wait(TimeSpan timeout) => _completion.Task.Wait(timeout);

    /// <summary>
    /// Stops the job: no new chunk starts, chunks in flight finish, and the job ends as Stopped with every page
    /// and request given back. BytesCopied then says what reached the destinations. Returns at once: the job is
    /// Stopping until its I/O in flight returns, which a hung device may hold for as long as it hangs.
    /// </summary>
    public void Stop()
    {
        _stopRequested = true;
        lock (_lock)
        {
            if (_state is CopyJobState.Queued or CopyJobState.Running) _state = CopyJobState.Stopping;
        }
        // The worker may sleep until a throttle delay is over: chunks waiting on it must end now, not then.
        Owner.Worker.Wake();
    }

    public override string ToString() => $"CopyJob {Id} ({State}, {BytesCopied}/{BytesTotal} bytes)";

    /// <summary>Hands out the first chunks, one sub-job each, up to the client's sub-jobs in flight.</summary>
    internal void Start()
    {
        var subJobs = new List<SubJob>(Owner.Options.SubJobsInFlight);
        lock (_lock)
        {
            while (subJobs.Count < Owner.Options.SubJobsInFlight && TryTakeChunk(out long offset, out long length, out bool hole))
            {
                var job = Owner.RentSubJob();
                job.Arm(this, offset, length, hole);
                subJobs.Add(job);
                _outstandingSubJobs++;
            }
        }
        if (subJobs.Count == 0)
        {
            // The map held every chunk: nothing to copy, and no sub-job to end the job.
            MarkRunning();
            Finish();
            return;
        }
        foreach (var job in subJobs) Owner.Worker.Dispatch(job);
    }

    internal void MarkRunning()
    {
        if (StartTime != null) return;
        lock (_lock)
        {
            if (StartTime != null) return;
            StartTime = DateTime.Now;
            Interlocked.Exchange(ref _startTimestamp, Stopwatch.GetTimestamp());
            if (_state == CopyJobState.Queued) _state = CopyJobState.Running; // a Stopping job stays Stopping
        }
    }

    /// <summary>
    /// Accounts a finished chunk (segment_complete). Returns true when the sub-job was re-armed with the next
    /// chunk; <paramref name="jobFinished"/> is true when this was the last sub-job out.
    /// </summary>
    internal bool SubJobFinished(SubJob job, out bool jobFinished)
    {
        jobFinished = false;
        lock (_lock)
        {
            if (job.ReadError) Interlocked.CompareExchange(ref _readErrno, job.Errno == 0 ? Errno.EIO : job.Errno, 0);
            if (job.WriteErrorMask != 0)
            {
                _writeErrorMask |= job.WriteErrorMask;
                if (_writeErrno == 0) _writeErrno = job.Errno == 0 ? Errno.EIO : job.Errno;
            }
            if (job.HasError) _failed = true;
            else if (!job.Skipped)
            {
                Interlocked.Add(ref _bytesCopied, job.DataBytes);
                Interlocked.Add(ref _bytesZeroed, job.ZeroedBytes);
                Interlocked.Add(ref _bytesSkipped, job.SkippedBytes);
                if (!job.Mismatched) _map?.Finished(job.RelativeOffsetBytes, job.LengthBytes);
            }

            if (TryTakeChunk(out long offset, out long length, out bool hole))
            {
                job.Arm(this, offset, length, hole);
                return true;
            }
            jobFinished = --_outstandingSubJobs == 0;
            return false;
        }
    }

    /// <summary>A destination's re-read of a chunk differed from the source (on the worker).</summary>
    internal void AddMismatch(int destination, long relativeOffsetBytes, long lengthBytes, bool unreadable)
        => _mismatches!.Add(destination, Request.Destinations[destination].OffsetBytes + relativeOffsetBytes, lengthBytes, unreadable);

    /// <summary>Ends the job: state, times, message, then the callback and the task.</summary>
    internal void Finish()
    {
        // With a map, the job ends only once the map holds what it finished: its thread flushes, then ends the job.
        if (_map is { IsClosed: false } map)
        {
            map.Close(Finish);
            return;
        }
        Interlocked.Exchange(ref _endTimestamp, Stopwatch.GetTimestamp());
        EndTime = DateTime.Now;
        Error = DescribeErrors();
        Warnings = Request.Destinations
            .SelectMany((d, i) => d.Device is IWarningSource w ? w.WarningsSince(_warningsAtStart[i]).Select(text => $"{d.Device.Name}: {text}") : [])
            .Concat(CacheWarnings())
            .Concat(_map?.Warnings ?? [])
            .ToArray();
        _state = _failed || MismatchedBytes > 0 ? CopyJobState.Failed
            : BytesDone == BytesTotal ? CopyJobState.Completed
            : CopyJobState.Stopped;
        try
        {
            Request.Completed?.Invoke(this);
        }
        catch (Exception ex)
        {
            // A callback must not take the client's worker down with it.
            Error = (Error == null ? "" : Error + " ") + $"The completion callback failed: {ex.Message}";
        }
        Owner.JobEnded();
        _completion.TrySetResult();
    }

    /// <summary>
    /// The next chunk. When zeroes are looked for, the source's holes (SEEK_DATA/SEEK_HOLE) are chunks of their own
    /// that are never read: a data chunk ends where a hole of at least a page starts, and a hole is taken whole, up
    /// to a zeroing chunk (64 MiB), since it needs no pages; with -Verify it stays within a chunk, whose pages the
    /// re-read needs.
    /// </summary>
    private bool TryTakeChunk(out long offset, out long length, out bool hole)
    {
        offset = _map?.SkipHeld(_nextChunkOffset) ?? _nextChunkOffset;
        length = Math.Min(_chunkBytes, BytesTotal - offset);
        hole = false;
        if (length <= 0 || ShouldStopIssuing) return false;
        if (Request.DetectsZeroes) (hole, length) = FitToExtents(offset, length);
        if (_map != null) length = Math.Min(length, _map.NextHeldStart(offset) - offset); // a map's chunk boundary is block-aligned
        _nextChunkOffset = offset + length;
        return true;
    }

    private (bool Hole, long Length) FitToExtents(long offset, long length)
    {
        var source = Request.Source!;
        long rest = BytesTotal - offset, at = Request.SourceOffsetBytes + offset;
        long most = Request.Verify ? length : Math.Min(Math.Max(Owner.Options.ZeroChunkBytes, _chunkBytes), rest);
        var (isHole, bytes) = source.ExtentAt(at, most);
        if (isHole)
        {
            long hole = bytes == rest ? bytes : bytes - bytes % _blockBytes;
            return hole >= MinHoleBytes || hole == rest ? (true, hole) : (false, length);
        }
        if (bytes >= length) return (false, length);
        // Data up to a hole inside the chunk: stop there if the hole is worth not reading.
        long dataEnd = (bytes + _blockBytes - 1) / _blockBytes * _blockBytes;
        var (next, holeBytes) = source.ExtentAt(at + bytes, MinHoleBytes);
        return next && holeBytes >= MinHoleBytes && dataEnd < length ? (false, dataEnd) : (false, length);
    }

    /// <summary>
    /// A destination the filesystem would not open with O_DIRECT (tmpfs, some FUSE filesystems) was re-read through
    /// the page cache, which may hold what was written whether or not it reached the storage.
    /// </summary>
    private IEnumerable<string> CacheWarnings() => Request.Verify
        ? Request.Destinations.Where(d => d.Device is LinuxBlockDevice { IsDirect: false })
            .Select(d => $"{d.Device.Name}: re-read through the page cache for -Verify, since its filesystem refuses O_DIRECT.")
        : [];

    private string? DescribeErrors()
    {
        var parts = new List<string>();
        if (ReadError) parts.Add($"Reading '{Source}' failed: {Errno.DescribeNamed(_readErrno)}.");
        foreach (var destination in WriteErrors) parts.Add($"Writing '{destination}' failed: {Errno.DescribeNamed(_writeErrno)}.");
        if (_mismatches?.Describe() is { } mismatches) parts.Add(mismatches);
        if (parts.Count > 0 && Request.IgnoreErrors) parts.Add($"Errors were ignored: {BytesDone} of {BytesTotal} bytes were copied.");
        return parts.Count == 0 ? null : string.Join(" ", parts);
    }
}
