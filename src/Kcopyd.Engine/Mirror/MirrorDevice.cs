using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// A mirror of 2 to 9 block devices (dm-raid1): every write goes to every live leg, reads are balanced, and a
/// recovery copies out-of-sync regions from the default leg to the others. It owns its copy client (worker,
/// pages, I/O queue), its request pool and its daemon thread (kmirrord), so a caller blocked in this mirror's
/// pool never stalls another device's progress, and this mirror's progress never waits on another's threads.
/// </summary>
public sealed partial class MirrorDevice : IBlockDevice, IWarningSource
{
    /// <summary>dm-raid1's limit: one source and up to eight kcopyd destinations.</summary>
    public const int MaxLegs = CopyRequest.MaxDestinations + 1;

    private static readonly object s_legsLock = new();
    private static readonly List<(IBlockDevice Device, MirrorDevice Owner)> s_legsInUse = new();
    private static long s_lastId;

    /// <summary>Replaced whole (never changed in place) by a leg change, which runs with the mirror suspended.</summary>
    private volatile MirrorLeg[] _legs;
    private readonly object _legLock = new();
    private readonly IDirtyLog _log;
    private readonly RegionHash _regions;
    private readonly MirrorOptions _options;
    private readonly Action<RegionIo> _readDone;
    private readonly Action<RegionIo> _writeDone;
    private readonly Action<RegionIo> _flushDone;
    private int _defaultLeg;
    private long _readCursor;
    private int _submitters;
    private int _closing;

    public MirrorDevice(IReadOnlyList<IBlockDevice> legs, MirrorOptions? options = null)
        : this(legs, options, sharedWorker: null, log: null)
    {
    }

    /// <summary>
    /// With <paramref name="sharedWorker"/> the mirror's copy client runs on a worker shared with other clients:
    /// the single kcopyd thread of the pre-patch kernel, for the deadlock test only. <paramref name="log"/> replaces
    /// the log the options would open (it must fit this mirror).
    /// </summary>
    internal MirrorDevice(IReadOnlyList<IBlockDevice> legs, MirrorOptions? options, CopyWorker? sharedWorker, IDirtyLog? log)
    {
        ArgumentNullException.ThrowIfNull(legs);
        _options = options ?? new MirrorOptions();
        CheckLegs(legs);
        int blockSize = legs[0].LogicalBlockSize;
        CheckRegionSize(_options.RegionSizeBytes, blockSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.RequestPoolSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.RecoveryRegionsInFlight, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(_options.RecoveryBytesPerSecond);

        Id = Interlocked.Increment(ref s_lastId);
        Name = _options.Name ?? $"mirror{Id}";
        Identity = new DeviceIdentity(DeviceKind.Mirror, (ulong)Id, 0);
        LogicalBlockSize = legs.Max(l => l.LogicalBlockSize);
        SizeBytes = legs.Min(l => l.SizeBytes) / LogicalBlockSize * LogicalBlockSize;
        if (SizeBytes == 0)
            throw new KcopydException("LegTooSmall", KcopydErrorKind.InvalidArgument, "The smallest leg holds no whole block.", legs);
        RegionSizeBytes = _options.RegionSizeBytes;
        RegionCount = (SizeBytes + RegionSizeBytes - 1) / RegionSizeBytes;
        _legs = legs.Select((device, i) => new MirrorLeg(device, i)).ToArray();
        _readDone = ReadDone;
        _writeDone = WriteDone;
        _flushDone = FlushDone;

        ClaimLegs();
        try
        {
            _log = log ?? OpenLog();
            if (_log.RegionCount != RegionCount || _log.RegionSizeBytes != RegionSizeBytes)
                throw new KcopydException("LogMismatch", KcopydErrorKind.InvalidArgument,
                    $"The log holds {_log.RegionCount} regions of {_log.RegionSizeBytes} bytes; the mirror has {RegionCount} of {RegionSizeBytes}.", _log.Path);
            if (_log is DiskDirtyLog disk) RefuseLogOnALeg(disk.File);
            TakeLegStatesFromLog();
            _regions = new RegionHash(_log);
            RequestPool = new RequestPool(_options.RequestPoolSize);
            Client = new CopyClient(new CopyClientOptions
            {
                Name = $"mirror/{Name}",
                PageCount = _options.PageCount,
                SubJobSizeBytes = (int)Math.Min(1024 * 1024, (long)_options.PageCount * 64 * 1024),
                IoDepth = _options.IoDepth,
            }, sharedWorker);
            Client.Throttle.BytesPerSecond = _options.RecoveryBytesPerSecond;
        }
        catch (Exception ex)
        {
            if (log == null && _log != null)
            {
                if (_log is DiskDirtyLog { IsNew: true } created) created.File.DeleteIfCreated();
                _log.Dispose();
            }
            ReleaseLegs();
            if (ex is IOException)
                throw new KcopydException("LogWriteFailed", KcopydErrorKind.DeviceError, $"Cannot write the mirror log '{_options.LogPath}': {ex.Message}", _options.LogPath, ex);
            throw;
        }
        LegTimeout = _options.LegTimeout;
        _legWatch = new Timer(_ => WatchLegs(), null, LegWatchInterval, LegWatchInterval);
        _daemon = new Thread(RunDaemon) { IsBackground = true, Name = $"kmirrord/{Name}" };
        _daemon.Start();
        Wake(); // the first pass starts the recovery
    }

    public long Id { get; }

    public string Name { get; }

    public long SizeBytes { get; }

    public int LogicalBlockSize { get; }

    public bool CanWrite => true;

    public DeviceIdentity Identity { get; }

    /// <summary>A mirror is known by its name: that is what a mirror stacked on it records in its log.</summary>
    public string StableId => $"mirror:{Name}";

    public long RegionSizeBytes { get; }

    public long RegionCount { get; }

    public IReadOnlyList<MirrorLeg> Legs => _legs;

    /// <summary>The leg recovery copies from and out-of-sync regions are read from and written to.</summary>
    public MirrorLeg DefaultLeg => _legs[Volatile.Read(ref _defaultLeg)];

    /// <summary>Every request holds a slot of this pool for its whole life; its size can be changed while running.</summary>
    public RequestPool RequestPool { get; }

    /// <summary>The recovery's limit: the throttle of the mirror's own copy client.</summary>
    public CopyThrottle RecoveryThrottle => Client.Throttle;

    public MirrorState State
        => _legs.Any(l => l.Health is LegHealth.Dead or LegHealth.Hung) ? MirrorState.Degraded
            : _log.SyncCount == RegionCount && _legs.All(l => l.IsAlive) ? MirrorState.InSync
            : MirrorState.Recovering;

    public long InSyncRegions => _log.SyncCount;

    internal CopyClient Client { get; }

    internal RegionState StateOfRegion(long region) => _regions.StateOf(region);

    /// <summary>
    /// Starts a read, write, zeroing, discard or flush. Takes a request slot first, waiting while the pool is
    /// empty; the slot is held until the request ends. The legs' I/O goes through the mirror's own queue, not
    /// <paramref name="queue"/>.
    /// </summary>
    public void Submit(in BlockRequest request, IIoQueue queue)
    {
        EnterSubmit();
        try
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _closing) != 0, this);
            if (request.Operation == BlockOperation.Flush)
            {
                if (!TakeSlot(request)) return;
                var flush = new RegionIo(new MirrorRequest(request, RequestPool, 1), region: -1, 0, 0, _flushDone);
                Queue(_flushes, flush, atFront: false);
                return;
            }
            if (request.OffsetBytes < 0 || request.LengthBytes < 0 || request.OffsetBytes > SizeBytes - request.LengthBytes
                || request.OffsetBytes % LogicalBlockSize != 0 || request.LengthBytes % LogicalBlockSize != 0)
            {
                request.Completion.Completed(request.Tag, Errno.EINVAL);
                return;
            }
            if (request.LengthBytes == 0)
            {
                request.Completion.Completed(request.Tag, 0);
                return;
            }
            if (!TakeSlot(request)) return;

            var pieces = Split(request);
            if (request.Operation == BlockOperation.Read)
            {
                foreach (var io in pieces) IssueRead(io);
            }
            else
            {
                lock (_queueLock) _writes.AddRange(pieces);
                Wake();
            }
        }
        finally
        {
            Interlocked.Decrement(ref _submitters);
        }
    }

    /// <summary>Flushes the log and every live leg, and waits for it.</summary>
    public void Flush()
    {
        var done = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        Submit(new BlockRequest(BlockOperation.Flush, 0, 0, IoBuffers.None, new TaskCompletion(done), 0), Client.Queue);
        int errno = done.Task.GetAwaiter().GetResult();
        if (errno != 0)
            throw new KcopydException("MirrorFlushFailed", KcopydErrorKind.DeviceError, $"Flushing mirror '{Name}' failed: {Errno.Describe(errno)}.", Name);
    }

    /// <summary>True once every region is in sync on every leg; false if <paramref name="timeout"/> passed first.</summary>
    public async Task<bool> WaitForSyncAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        Task inSync;
        lock (_syncLock) inSync = _inSync.Task;
        try
        {
            await inSync.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    public bool WaitForSync(TimeSpan timeout) => WaitForSyncAsync(timeout).GetAwaiter().GetResult();

    public MirrorStatus GetStatus()
    {
        int defaultLeg = Volatile.Read(ref _defaultLeg);
        return new MirrorStatus
        {
            Name = Name,
            SizeBytes = SizeBytes,
            RegionSizeBytes = RegionSizeBytes,
            RegionCount = RegionCount,
            InSyncRegions = _log.SyncCount,
            State = State,
            DefaultLeg = _legs[defaultLeg].Name,
            Warnings = Warnings,
            Legs = _legs.Select(l => new MirrorLegStatus
            {
                Path = l.Name, Name = l.Name, StableId = l.StableId, Health = l.Health, IsDefault = l.Index == defaultLeg,
                Reads = l.Reads, ReadErrors = l.ReadErrors, WriteErrors = l.WriteErrors,
                IoInFlight = l.IoInFlight, LateAnswers = l.LateAnswers,
            }).ToArray(),
            LegTimeout = LegTimeout,
            LogKind = _log.Kind,
            LogPath = _log.Path,
            RequestPoolInUse = RequestPool.InUse,
            RequestPoolSize = RequestPool.Size,
            RequestPoolWaiters = RequestPool.Waiters,
            RecoveredBytes = Interlocked.Read(ref _recoveredBytes),
            RecoveryBytesPerSecond = RecoveryRate(),
            RecoveryLimitBytesPerSecond = RecoveryThrottle.BytesPerSecond,
            RecoveredRegions = Interlocked.Read(ref _recoveredRegions),
            RecoveringRegions = _regions.RecoveringRegions,
            HeldWrites = _regions.HeldWrites,
        };
    }

    public override string ToString() => Name;

    /// <summary>
    /// Stops the recovery (its jobs end as Stopped, their regions stay out of sync), lets every request in flight
    /// end (held writes are released as their regions' recovery ends), flushes the log, then frees the client.
    /// The legs are disposed too with <see cref="MirrorOptions.OwnsLegs"/>.
    /// </summary>
    public void Dispose() => Close(Timeout.InfiniteTimeSpan);

    /// <summary>
    /// Closes the mirror as <see cref="Dispose"/> does, waiting at most <paramref name="timeout"/>: a leg that hangs
    /// must not hang whoever removes the mirror. True when it closed in time. False when I/O to a leg has not
    /// returned: the mirror takes no new request, and a thread of its own finishes closing once that I/O ends
    /// (its legs stay claimed and its log locked until then), then runs <paramref name="closed"/>.
    /// </summary>
    public bool Close(TimeSpan timeout, Action? closed = null)
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0) return true;
        _running.Set(); // submitters held by a leg change see the mirror closing
        var done = new ManualResetEventSlim(false);
        var finisher = new Thread(() =>
        {
            try
            {
                StopRecovery();
                SpinWait.SpinUntil(() => Volatile.Read(ref _submitters) == 0);
                RequestPool.WaitIdle(Timeout.InfiniteTimeSpan);
                FinishClose();
            }
            finally
            {
                closed?.Invoke();
                done.Set();
            }
        }) { IsBackground = true, Name = $"kmirrord-close/{Name}" };
        finisher.Start();
        if (done.Wait(timeout)) return true;
        Warn($"Closing waits for I/O that has not returned after {timeout.TotalSeconds:0} s; the legs and the log are let go once it does.");
        return false;
    }

    /// <summary>Once nothing is in flight: the daemon stops, the legs and then the log are flushed, everything is freed.</summary>
    private void FinishClose()
    {
        StopDaemon();
        try
        {
            // The clears go out only after the legs hold the data on their media.
            _log.Flush(includeClears: FlushLegs());
        }
        finally
        {
            _log.Dispose();
            // The queue lets its I/O in flight end first (a hung leg's too): the legs are let go only after it.
            Client.Dispose();
            _legWatch.Dispose();
            ReleaseLegs();
            if (_options.OwnsLegs)
                foreach (var leg in _legs) leg.Device.Dispose();
        }
    }

    private bool TakeSlot(in BlockRequest request)
    {
        if (RequestPool.Acquire()) return true;
        request.Completion.Completed(request.Tag, Errno.EIO); // the pool was aborted
        return false;
    }

    /// <summary>Cuts a request at region boundaries: each piece is routed by its own region's state.</summary>
    private List<RegionIo> Split(in BlockRequest request)
    {
        long first = request.OffsetBytes / RegionSizeBytes;
        long last = (request.OffsetBytes + request.LengthBytes - 1) / RegionSizeBytes;
        var parent = new MirrorRequest(request, RequestPool, checked((int)(last - first + 1)));
        var done = request.Operation == BlockOperation.Read ? _readDone : _writeDone;
        var pieces = new List<RegionIo>((int)(last - first + 1));
        for (long region = first; region <= last; region++)
        {
            long start = Math.Max(request.OffsetBytes, region * RegionSizeBytes);
            long end = Math.Min(request.OffsetBytes + request.LengthBytes, (region + 1) * RegionSizeBytes);
            var io = new RegionIo(parent, region, start, end - start, done);
            io.SliceBuffers(start - request.OffsetBytes);
            pieces.Add(io);
        }
        return pieces;
    }

    private IDirtyLog OpenLog()
        => _options.LogPath == null
            ? new CoreDirtyLog(RegionSizeBytes, RegionCount, _options.NoSync)
            : DiskDirtyLog.Open(_options.LogPath, RegionSizeBytes, RegionCount, _legs.Select(l => l.ToLogLeg()).ToArray(), _options.NoSync, _options.ResetLog,
                LogPlacementCheck(_legs.Select(l => l.Device).ToArray(), _options.LogPath));

    /// <summary>
    /// A persistent log knows the legs' health and the default leg from the last run. The default holds every
    /// acknowledged write (it only moves while the mirror is in sync), so it comes back alive even if it had died;
    /// any other leg that was dead or stale comes back stale: written to and resynced, read from only once in sync.
    /// </summary>
    private void TakeLegStatesFromLog()
    {
        var recorded = _log.RecordedLegs;
        if (recorded == null) return;
        _defaultLeg = _log.RecordedDefaultLeg;
        bool changed = false;
        foreach (var leg in _legs)
        {
            var health = leg.Index == _defaultLeg || recorded[leg.Index].Health == LegHealth.Alive ? LegHealth.Alive : LegHealth.Stale;
            changed |= health != recorded[leg.Index].Health;
            leg.SetHealth(health);
        }
        if (!changed) return;
        _log.RecordLegs(_legs.Select(l => l.ToLogLeg()).ToArray(), _defaultLeg);
        _log.Flush(includeClears: false);
    }

    /// <summary>A mirror has 2 to <see cref="MaxLegs"/> legs: TooFewLegs or TooManyLegs otherwise.</summary>
    public static void CheckLegCount(int count)
    {
        if (count < 2)
            throw new KcopydException("TooFewLegs", KcopydErrorKind.InvalidArgument, $"A mirror needs at least 2 legs, not {count}.", count);
        if (count > MaxLegs)
            throw new KcopydException("TooManyLegs", KcopydErrorKind.InvalidArgument, $"A mirror has at most {MaxLegs} legs, not {count}.", count);
    }

    private static void CheckLegs(IReadOnlyList<IBlockDevice> legs)
    {
        CheckLegCount(legs.Count);
        foreach (var leg in legs) ArgumentNullException.ThrowIfNull(leg, nameof(legs));
        var odd = legs.FirstOrDefault(l => l.LogicalBlockSize != legs[0].LogicalBlockSize);
        if (odd != null)
            throw new KcopydException("LegBlockSizeMismatch", KcopydErrorKind.InvalidArgument,
                $"'{odd.Name}' has {odd.LogicalBlockSize}-byte blocks, '{legs[0].Name}' {legs[0].LogicalBlockSize}-byte ones.", odd.Name);
        for (int i = 0; i < legs.Count; i++)
        {
            for (int j = 0; j < i; j++)
            {
                if (StorageExtent.Overlap(legs[i], legs[j]))
                    throw new KcopydException("LegInUse", KcopydErrorKind.InvalidArgument,
                        legs[i].Name == legs[j].Name ? $"'{legs[i].Name}' is given twice." : $"'{legs[i].Name}' and '{legs[j].Name}' share storage.", legs[i].Name);
            }
            if (!legs[i].CanWrite)
                throw new KcopydException("DeviceReadOnly", KcopydErrorKind.InvalidArgument, $"'{legs[i].Name}' is open read-only.", legs[i].Name);
        }
    }

    /// <summary>
    /// A log stored in a leg would be overwritten by the mirror it protects: the check, for <see cref="LogFile.Open"/>,
    /// that refuses a log file that is a leg (or the file under a loop leg), or that lives on a filesystem whose
    /// storage (through partitions and loop devices) is a leg's. It runs before the log is locked, read or created,
    /// so a refused log, and the leg it is, stay untouched.
    /// </summary>
    public static Action<DeviceIdentity?, ulong> LogPlacementCheck(IReadOnlyList<IBlockDevice> legs, string logPath) => (file, filesystemDevice) =>
    {
        var (filesystem, filesystemLength) = StorageResolver.ExtentOf(filesystemDevice);
        foreach (var leg in legs)
        {
            var storage = leg.Storage;
            bool isLeg = (file is { } identity && storage.Base == identity)
                || (storage.Base == filesystem.Base
                    && storage.OffsetBytes < filesystem.OffsetBytes + filesystemLength && filesystem.OffsetBytes < storage.OffsetBytes + leg.SizeBytes);
            if (isLeg)
                throw new KcopydException("InvalidLogPath", KcopydErrorKind.InvalidArgument,
                    $"The mirror log '{logPath}' is stored on leg '{leg.Name}' of the mirror, which would overwrite it.", logPath);
        }
    };

    /// <summary>The same check for a log opened elsewhere (one handed in).</summary>
    private void RefuseLogOnALeg(LogFile file)
        => LogPlacementCheck(_legs.Select(l => l.Device).ToArray(), file.Path)(file.Identity, file.FilesystemDevice);

    private static void CheckRegionSize(long regionSizeBytes, int blockSize)
    {
        if (regionSizeBytes <= 0 || (regionSizeBytes & (regionSizeBytes - 1)) != 0 || regionSizeBytes % blockSize != 0)
            throw new KcopydException("InvalidRegionSize", KcopydErrorKind.InvalidArgument,
                $"The region size {regionSizeBytes} must be a power of two and a multiple of the legs' block size {blockSize}.", regionSizeBytes);
    }

    /// <summary>A device is a leg of one live mirror at a time: two mirrors writing one device would corrupt each other.</summary>
    /// <summary>The live mirror (of this process) with a leg sharing storage with <paramref name="device"/>, if any.</summary>
    public static MirrorDevice? MirrorUsing(IBlockDevice device)
    {
        lock (s_legsLock) return s_legsInUse.FirstOrDefault(e => StorageExtent.Overlap(e.Device, device)).Owner;
    }

    private void ClaimLegs() => Claim(_legs.Select(l => l.Device));

    private void ReleaseLegs() => Release(_legs.Select(l => l.Device));

    private void Claim(IEnumerable<IBlockDevice> devices)
    {
        lock (s_legsLock)
        {
            var list = devices.ToList();
            foreach (var device in list)
            {
                // By storage, not name: a partition and its disk, or a loop device and its file, are one leg.
                var (used, owner) = s_legsInUse.FirstOrDefault(e => StorageExtent.Overlap(e.Device, device));
                if (owner != null)
                    throw new KcopydException("LegInUse", KcopydErrorKind.ResourceBusy,
                        $"'{device.Name}' is {(used.Name == device.Name ? "" : $"the storage of '{used.Name}', ")}already a leg of mirror '{owner.Name}'.", device.Name);
            }
            // Other processes see the claim only through the device: a lock every mirror takes on its legs.
            var claimed = new List<LinuxBlockDevice>();
            try
            {
                foreach (var leg in list.OfType<LinuxBlockDevice>())
                {
                    leg.ClaimAsLeg();
                    claimed.Add(leg);
                }
            }
            catch
            {
                claimed.ForEach(l => l.ReleaseLegClaim());
                throw;
            }
            foreach (var device in list) s_legsInUse.Add((device, this));
        }
    }

    private void Release(IEnumerable<IBlockDevice> devices)
    {
        lock (s_legsLock)
        {
            foreach (var device in devices)
            {
                if (s_legsInUse.RemoveAll(e => ReferenceEquals(e.Device, device) && e.Owner == this) > 0 && device is LinuxBlockDevice leg)
                    leg.ReleaseLegClaim();
            }
        }
    }

    /// <summary>Turns a request's end into a task, for the mirror's own synchronous helpers.</summary>
    private sealed class TaskCompletion(TaskCompletionSource<int> done) : IBlockCompletion
    {
        public void Completed(int tag, int error) => done.TrySetResult(error);
    }
}
