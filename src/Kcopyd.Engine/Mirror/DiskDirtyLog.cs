using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Native;
using Tmds.Linux;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// A dirty log in a file (dm-log's "disk"), in the checksummed two-slot layout of <see cref="LogFormat"/>: the
/// mirror's legs by stable identity with their health and the default leg, then one bit per region, set when the
/// region is in sync and clean. A mark is written and synced before the write it covers is issued; clears reach
/// the file lazily, and only after the legs were flushed.
/// </summary>
public sealed class DiskDirtyLog : IDirtyLog
{
    private const long MaxReadBytes = 256L << 20;
    private readonly RegionBitmaps _bits;
    private readonly object _flushLock = new();
    private readonly LogFile _file;
    private readonly long _slotBytes;
    private LogHeader _header;
    private bool _headerChanged;

    private DiskDirtyLog(LogFile file, LogHeader header, RegionBitmaps bits)
    {
        _file = file;
        _header = header;
        _bits = bits;
        _slotBytes = LogFormat.SlotBytes(header.RegionCount);
    }

    public string Kind => "disk";

    public string Path => _file.Path;

    public long RegionSizeBytes => _header.RegionSizeBytes;

    public long RegionCount => _header.RegionCount;

    public long SyncCount { get { lock (_bits.Lock) return _bits.SyncCount; } }

    /// <summary>True when the file was absent or empty (or reset) and this log started it.</summary>
    public bool IsNew { get; private init; }

    /// <summary>The file this log lives in, so a mirror can refuse a log stored on one of its own legs.</summary>
    public LogFile File => _file;

    public IReadOnlyList<LogLeg> RecordedLegs { get { lock (_bits.Lock) return _header.Legs; } }

    public int RecordedDefaultLeg { get { lock (_bits.Lock) return _header.DefaultLeg; } }

    public bool ClearsPending { get { lock (_bits.Lock) return _bits.ClearsPending; } }

    /// <summary>
    /// Opens the log of the mirror described by the arguments. A file that is absent or empty starts a new log
    /// (all out of sync, or all in sync with <paramref name="noSync"/>). An existing one must check (LogCorrupt),
    /// be for this geometry (LogMismatch) and name exactly these legs in this order (LegIdentityMismatch); with
    /// <paramref name="resetLog"/> the log is started afresh, every region out of sync (a full resync from the first
    /// leg), whether or not it checks; but a readable log that records another of the given legs as the default while
    /// the mirror was not in sync is refused even then (the resync would overwrite the only full copy).
    /// Nothing is written to a file that is refused.
    /// </summary>
    public static DiskDirtyLog Open(string path, long regionSizeBytes, long regionCount, IReadOnlyList<LogLeg> legs, bool noSync, bool resetLog = false,
        Action<DeviceIdentity?, ulong>? checkPlacement = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(legs);
        var file = LogFile.Open(path, createIfMissing: true, checkPlacement);
        try
        {
            var log = OpenFile(file, regionSizeBytes, regionCount, legs, noSync, resetLog);
            return log;
        }
        catch
        {
            file.DeleteIfCreated();
            file.Dispose();
            throw;
        }
    }

    private static DiskDirtyLog OpenFile(LogFile file, long regionSizeBytes, long regionCount, IReadOnlyList<LogLeg> legs, bool noSync, bool resetLog)
    {
        long length = RandomAccess.GetLength(file.Handle);
        if (length > 0)
        {
            var bytes = ReadBytes(file.Handle);
            var found = LogFormat.TryDecodeFile(bytes, out string why, out bool slotsAgree);
            var refusal = found == null ? Unreadable(file.Path, bytes, why) : Unfit(file.Path, found.Value.Header, regionSizeBytes, regionCount, legs);
            if (refusal == null && !resetLog)
            {
                var bits = new RegionBitmaps(regionCount, allInSync: false);
                bits.LoadClean(found!.Value.Clean);
                // A spoilt or older slot is rewritten at the first flush, so one good copy never stays alone.
                return new DiskDirtyLog(file, found.Value.Header, bits) { _headerChanged = !slotsAgree };
            }
            if (!resetLog) throw refusal!;
            if (found != null && ResetWouldOverwriteDefault(file.Path, found.Value.Header, found.Value.Clean, legs) is { } overwrite)
                throw overwrite;
            noSync = false; // a reset log trusts nothing on the legs
            RandomAccess.SetLength(file.Handle, 0);
        }
        var header = new LogHeader(Guid.NewGuid(), 0, regionSizeBytes, regionCount, 0,
            legs.Select(l => l with { Health = LegHealth.Alive }).ToArray());
        var log = new DiskDirtyLog(file, header, new RegionBitmaps(regionCount, allInSync: noSync)) { IsNew = true };
        log._headerChanged = true;
        log.Flush(includeClears: true);
        return log;
    }

    public bool InSync(long region) { lock (_bits.Lock) return _bits.InSync(region); }

    public void MarkRegion(long region) { lock (_bits.Lock) _bits.MarkRegion(region); }

    public void ClearRegion(long region) { lock (_bits.Lock) _bits.ClearRegion(region); }

    public void SetRegionSync(long region, bool inSync) { lock (_bits.Lock) _bits.SetRegionSync(region, inSync); }

    public void SetAllOutOfSync() { lock (_bits.Lock) _bits.SetAllOutOfSync(); }

    public bool TryGetResyncWork(out long region) { lock (_bits.Lock) return _bits.TryGetResyncWork(out region); }

    public void RestartResync() { lock (_bits.Lock) _bits.RestartResync(); }

    public void RecordLegs(IReadOnlyList<LogLeg> legs, int defaultLeg)
    {
        lock (_bits.Lock)
        {
            _header = _header with { Legs = legs.ToArray(), DefaultLeg = defaultLeg };
            _headerChanged = true;
        }
    }

    /// <summary>Writes both slots, each synced before the next, if anything that must be durable changed.</summary>
    public void Flush(bool includeClears)
    {
        lock (_flushLock)
        {
            byte[] bits;
            LogHeader header;
            lock (_bits.Lock)
            {
                if (!_bits.MarksPending && !_headerChanged && !(includeClears && _bits.ClearsPending)) return;
                bits = _bits.Snapshot(includeClears);
                header = _header = _header with { Generation = _header.Generation + 1 };
                _headerChanged = false;
            }
            try
            {
                byte[] slot = LogFormat.Encode(header, bits);
                WriteSynced(slot, 0);
                WriteSynced(slot, _slotBytes);
            }
            catch
            {
                lock (_bits.Lock) _headerChanged = true;
                throw;
            }
            lock (_bits.Lock) _bits.Persisted(bits, includeClears);
        }
    }

    public void Dispose() => _file.Dispose();

    /// <summary>Reads just the count of regions a log file marks in sync (for status and tests), without opening it as a log.</summary>
    public static long CountInSync(string path, long regionCount)
    {
        var found = ReadFile(path) ?? throw new InvalidDataException($"'{path}' is not a valid mirror log.");
        long count = 0;
        for (long r = 0; r < Math.Min(regionCount, found.Header.RegionCount); r++)
            if ((found.Clean[r >> 3] & (1 << (int)(r & 7))) != 0) count++;
        return count;
    }

    /// <summary>
    /// The stable ids of the legs an existing log records (opened as safely as for use), or none when the file does
    /// not exist or does not check (the mirror then refuses it itself). Lets a mirror re-created from its own log
    /// skip the checks for legs holding data: they are its own.
    /// </summary>
    public static IReadOnlySet<string> RecordedLegIds(string path, Action<DeviceIdentity?, ulong>? checkPlacement = null)
    {
        LogFile file;
        try
        {
            file = LogFile.Open(path, createIfMissing: false, checkPlacement);
        }
        catch (KcopydException ex) when (ex.Kind == KcopydErrorKind.NotFound)
        {
            return new HashSet<string>();
        }
        using (file)
        {
            var found = LogFormat.TryDecodeFile(ReadBytes(file.Handle), out _);
            return found?.Header.Legs.Select(l => l.StableId).ToHashSet() ?? new HashSet<string>();
        }
    }

    /// <summary>The header of a log file, or null when no slot of it checks.</summary>
    public static LogHeader? ReadHeader(string path) => ReadFile(path)?.Header;

    private static (LogHeader Header, byte[] Clean)? ReadFile(string path)
    {
        // Not a FileStream: its advisory lock would conflict with the live mirror's, and this only reads.
        using var file = new Microsoft.Win32.SafeHandles.SafeFileHandle(OpenForReading(path), ownsHandle: true);
        return LogFormat.TryDecodeFile(ReadBytes(file), out _);
    }

    /// <summary>A log file's bytes, as many as a log of any size could hold.</summary>
    private static byte[] ReadBytes(Microsoft.Win32.SafeHandles.SafeFileHandle file)
    {
        var bytes = new byte[Math.Min(RandomAccess.GetLength(file), MaxReadBytes)];
        int read = RandomAccess.Read(file, bytes, 0);
        return read == bytes.Length ? bytes : bytes[..read];
    }

    private static unsafe nint OpenForReading(string path)
    {
        byte[] name = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = name)
        {
            int fd = LibC.open(p, LibC.O_RDONLY | LibC.O_CLOEXEC | LibC.O_NOFOLLOW | LibC.O_NONBLOCK, 0); // a FIFO must not hang a reader
            if (fd < 0) throw new IOException($"Cannot open '{path}': {Errno.Describe(Errno.Last)}.");
            return fd;
        }
    }

    private void WriteSynced(byte[] slot, long offset)
    {
        RandomAccess.Write(_file.Handle, slot, offset);
        if (LibC.fdatasync((int)_file.Handle.DangerousGetHandle()) != 0)
            throw new IOException($"fdatasync of the mirror log '{Path}' failed: {Errno.Describe(Errno.Last)}.");
    }

    private static KcopydException Unreadable(string path, byte[] bytes, string why)
    {
        if (bytes.AsSpan().StartsWith(LogFormat.OldMagic))
            return Mismatch(path, "it is a version 1 log, whose bits carry no checksum; start it afresh with -ResetLog");
        if (bytes.AsSpan().IndexOf(LogFormat.Magic) < 0)
            return Mismatch(path, "it is not a Kcopyd mirror log");
        return new KcopydException("LogCorrupt", KcopydErrorKind.InvalidArgument,
            $"The mirror log '{path}' fails its check ({why}): it is refused, since it could call an out-of-sync region in sync. " +
            "-ResetLog starts it afresh, every region out of sync (a full resync from the first leg).", path);
    }

    private static KcopydException? Unfit(string path, LogHeader found, long regionSizeBytes, long regionCount, IReadOnlyList<LogLeg> legs)
    {
        if (found.RegionSizeBytes != regionSizeBytes || found.RegionCount != regionCount)
            return Mismatch(path, $"it holds {found.RegionCount} regions of {found.RegionSizeBytes} bytes; the mirror has {regionCount} of {regionSizeBytes}");
        if (found.Legs.Count == legs.Count && found.Legs.Select(l => l.StableId).SequenceEqual(legs.Select(l => l.StableId)))
            return null;
        var byId = found.Legs.Select((l, i) => (l.StableId, Index: i)).ToDictionary(x => x.StableId, x => x.Index);
        string recorded = string.Join(", ", found.Legs.Select(l => $"{l.Name} ({l.StableId})"));
        if (found.Legs.Count == legs.Count && legs.All(l => byId.ContainsKey(l.StableId)))
        {
            var order = found.Legs.Select(l => legs.First(g => g.StableId == l.StableId).Name);
            return IdentityMismatch(path, $"the legs are the log's but in another order (their names may have changed): give them as {string.Join(", ", order)}");
        }
        var stranger = legs.FirstOrDefault(l => !byId.ContainsKey(l.StableId));
        return IdentityMismatch(path, stranger != null
            ? $"'{stranger.Name}' ({stranger.StableId}) is not a leg the log knows; it records {recorded}. To put a new device in, use Repair-MirrorDevice -ReplaceLeg"
            : $"it records {found.Legs.Count} legs ({recorded}), not {legs.Count}");
    }

    /// <summary>
    /// A reset resyncs every leg from the first. A log that still reads and records one of the given legs as the
    /// default (the leg holding every acknowledged write) while a region is out of sync or a leg is not alive must not
    /// be reset with another leg first: that copy would overwrite the only full copy with a stale one.
    /// </summary>
    private static KcopydException? ResetWouldOverwriteDefault(string path, LogHeader found, byte[] clean, IReadOnlyList<LogLeg> legs)
    {
        if (found.DefaultLeg < 0 || found.DefaultLeg >= found.Legs.Count) return null;
        int given = legs.Select(l => l.StableId).ToList().IndexOf(found.Legs[found.DefaultLeg].StableId);
        if (given <= 0) return null;
        bool allClean = true;
        for (long r = 0; r < found.RegionCount && allClean; r++)
            allClean = r >> 3 < clean.Length && (clean[r >> 3] & (1 << (int)(r & 7))) != 0;
        if (allClean && found.Legs.All(l => l.Health == LegHealth.Alive)) return null;
        return IdentityMismatch(path,
            $"-ResetLog would resync every leg from '{legs[0].Name}', but the log records '{legs[given].Name}' as the default leg, " +
            $"the only one holding every acknowledged write, and the mirror was not in sync; give '{legs[given].Name}' first " +
            "(or delete the log file to start afresh on purpose)");
    }

    private static KcopydException IdentityMismatch(string path, string why)
        => new("LegIdentityMismatch", KcopydErrorKind.InvalidArgument, $"The mirror log '{path}' does not fit these legs: {why}.", path);

    private static KcopydException Mismatch(string path, string why)
        => new("LogMismatch", KcopydErrorKind.InvalidArgument, $"The mirror log '{path}' cannot be used: {why}.", path);
}
