using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Mirror;
using Kcopyd.Engine.Native;
using Tmds.Linux;

namespace Kcopyd.Engine.Copy;

/// <summary>
/// A copy's persistent map of finished chunks (ddrescue's mapfile), for resuming it after a kill, a crash or a stop.
/// A chunk is marked only once it is flushed: a chunk whose writes (and -Verify re-reads) all came back waits as
/// pending; about once a second the map's own thread flushes every destination, then sets the pending chunks' bits
/// and writes and fdatasyncs the next slot of <see cref="CopyMapFormat"/>. A chunk finished after the flush was asked
/// for waits for the next one, so a bit on disk never covers a write the destinations may still lose. The copy's
/// worker never waits for any of it; only the job's end does (the last flush, which also writes the map complete).
/// A resumed copy skips the chunks the map holds (<see cref="BytesHeld"/>: BytesFromMap) without reading or
/// verifying them. The file is opened as a mirror log is (<see cref="LogFile"/>: 0600, no untrusted link followed,
/// OFD-locked so two copies cannot share a map), and may not be a link itself nor lie on a device of the copy.
/// </summary>
public sealed class CopyMap
{
    /// <summary>How often finished chunks are made durable: at most about this much copying is redone after a kill.</summary>
    internal static readonly TimeSpan FlushInterval = TimeSpan.FromSeconds(1);

    /// <summary>A destination whose flush takes longer than this leaves its chunks pending (the next flush tries again).</summary>
    private static readonly TimeSpan DeviceFlushTimeout = TimeSpan.FromSeconds(60);

    private const long MaxReadBytes = 256L << 20; // two slots of a map of 2^30 chunks and more: larger is no map of ours

    private readonly object _lock = new();
    private readonly LogFile _file;
    private readonly IReadOnlyList<CopyDestination> _destinations;
    private readonly IIoQueue _queue;
    private readonly byte[] _bits;      // chunks durable in the map (held at open, and flushed since)
    private readonly byte[] _held;      // chunks the map held at open: the copy skips these
    private readonly long _slotBytes;
    private readonly Dictionary<long, long> _partial = []; // chunk -> bytes of it done, while sub-jobs of it are out
    private readonly List<long> _pending = [];             // finished chunks waiting for the next flush
    private readonly ManualResetEventSlim _closing = new(false);
    private readonly List<string> _warnings = [];
    private CopyMapHeader _header;
    private long _chunksDurable;
    private Thread? _thread;
    private Action? _afterClose;
    private long _nextHeldStart = -1; // cache for NextHeldStart: offsets only grow
    private volatile bool _closed;

    private CopyMap(LogFile file, CopyMapHeader header, byte[] bits, IReadOnlyList<CopyDestination> destinations, IIoQueue queue, bool created)
    {
        _file = file;
        _header = header;
        _bits = bits;
        _held = (byte[])bits.Clone();
        _destinations = destinations;
        _queue = queue;
        _slotBytes = CopyMapFormat.SlotBytes(header.ChunkCount);
        Created = created;
        for (long c = 0; c < header.ChunkCount; c++)
            if (IsSet(_held, c))
            {
                _chunksDurable++;
                BytesHeld += ChunkLength(c);
            }
    }

    public string Path => _file.Path;

    /// <summary>This copy created the map (there was none, or an empty file).</summary>
    public bool Created { get; }

    public long ChunkBytes => _header.ChunkBytes;

    public long ChunkCount => _header.ChunkCount;

    /// <summary>The bytes of the region the map held when the copy started: they are not copied again.</summary>
    public long BytesHeld { get; }

    /// <summary>Chunks the map file marks finished now.</summary>
    public long ChunksDurable => Interlocked.Read(ref _chunksDurable);

    /// <summary>What went wrong keeping the map (a failed flush or write): the copy went on, a resume redoes more.</summary>
    public string[] Warnings { get { lock (_warnings) return _warnings.ToArray(); } }

    internal bool IsClosed => _closed;

    /// <summary>
    /// Opens the map at <see cref="CopyRequest.MapPath"/> for this copy, or creates it (all chunks to do) with chunks
    /// of <paramref name="chunkBytes"/>. A map of another copy (source, destinations, their sizes or offsets, or the
    /// length differ) is refused as MapMismatch, one that fails its checks as MapCorrupt; nothing is written to either.
    /// </summary>
    internal static CopyMap Open(CopyRequest request, long chunkBytes, IIoQueue queue)
    {
        string path = request.MapPath ?? throw new ArgumentException("The request has no map.", nameof(request));
        var expected = Describe(request, chunkBytes);
        RefuseLink(path);
        LogFile file;
        try
        {
            file = LogFile.Open(path, createIfMissing: true, PlacementCheck(request, path));
        }
        catch (KcopydException e) when (e.ErrorId is "InvalidLogPath" or "LogInUse" or "LogOpenFailed")
        {
            string id = e.ErrorId switch { "InvalidLogPath" => "InvalidMapPath", "LogInUse" => "MapInUse", _ => "MapOpenFailed" };
            string message = e.ErrorId == "LogInUse" ? $"The copy map '{path}' is in use by another copy (in this or another process)." : e.Message.Replace("mirror log", "copy map");
            throw new KcopydException(id, e.Kind, message, path, e);
        }
        try
        {
            return OpenFile(file, request, expected, queue);
        }
        catch
        {
            file.DeleteIfCreated();
            file.Dispose();
            throw;
        }
    }

    private static CopyMap OpenFile(LogFile file, CopyRequest request, CopyMapHeader expected, IIoQueue queue)
    {
        long length = RandomAccess.GetLength(file.Handle);
        if (length == 0)
        {
            var bits = new byte[CopyMapFormat.BitmapBytes(expected.ChunkCount)];
            var map = new CopyMap(file, expected, bits, request.Destinations, queue, created: true);
            // Both slots, each synced: a map that exists always has a slot that checks.
            map.WriteSlot(expected, bits);
            map.WriteSlot(map._header = expected with { Generation = 1 }, bits);
            return map;
        }
        var bytes = new byte[Math.Min(length, MaxReadBytes)];
        int read = RandomAccess.Read(file.Handle, bytes, 0);
        var found = CopyMapFormat.TryDecodeFile(bytes.AsSpan(0, read), out string why);
        if (found is not { } map2)
        {
            if (bytes.AsSpan(0, read).IndexOf(CopyMapFormat.Magic) < 0)
                throw Mismatch(file.Path, "it is not a Kcopyd copy map");
            throw new KcopydException("MapCorrupt", KcopydErrorKind.InvalidArgument,
                $"The copy map '{file.Path}' fails its checks ({why}): it is refused, since it could call a chunk finished that is not. " +
                "Remove it to copy the whole region again.", file.Path);
        }
        if (!map2.Header.SameCopy(expected)) throw Mismatch(file.Path, Difference(map2.Header, expected));
        if (map2.Header.ChunkBytes % request.AlignmentBytes != 0)
            throw Mismatch(file.Path, $"its chunks of {map2.Header.ChunkBytes} bytes are not a multiple of the devices' block size {request.AlignmentBytes}");
        return new CopyMap(file, map2.Header, map2.Bits, request.Destinations, queue, created: false);
    }

    /// <summary>Starts the thread that makes finished chunks durable.</summary>
    internal void Start(long jobId)
    {
        _thread = new Thread(Run) { IsBackground = true, Name = $"kcopyd-map/{jobId}" };
        _thread.Start();
    }

    /// <summary>The first offset at or after <paramref name="offsetBytes"/> (relative to the region) in a chunk the map did not hold.</summary>
    internal long SkipHeld(long offsetBytes)
    {
        long c = offsetBytes / ChunkBytes;
        if (c >= ChunkCount || !IsSet(_held, c)) return offsetBytes;
        while (c < ChunkCount && IsSet(_held, c)) c++;
        return Math.Min(c * ChunkBytes, _header.LengthBytes);
    }

    /// <summary>Where the next held chunk after <paramref name="offsetBytes"/> starts (the region's length if none): a sub-job ends there.</summary>
    internal long NextHeldStart(long offsetBytes)
    {
        if (_nextHeldStart > offsetBytes) return _nextHeldStart;
        long c = offsetBytes / ChunkBytes + 1;
        while (c < ChunkCount && !IsSet(_held, c)) c++;
        return _nextHeldStart = Math.Min(c * ChunkBytes, _header.LengthBytes);
    }

    /// <summary>
    /// A sub-job's bytes all reached every destination (and passed -Verify): the chunks it completes wait for the next flush.
    /// Called under the job's lock, on the client's worker.
    /// </summary>
    internal void Finished(long offsetBytes, long lengthBytes)
    {
        lock (_lock)
        {
            for (long at = offsetBytes, end = offsetBytes + lengthBytes; at < end;)
            {
                long c = at / ChunkBytes;
                long chunkEnd = Math.Min((c + 1) * ChunkBytes, _header.LengthBytes);
                long covered = Math.Min(end, chunkEnd) - at;
                long done = (_partial.TryGetValue(c, out long before) ? before : 0) + covered;
                if (done >= ChunkLength(c))
                {
                    _partial.Remove(c);
                    _pending.Add(c);
                }
                else
                {
                    _partial[c] = done;
                }
                at += covered;
            }
        }
    }

    /// <summary>
    /// The job ended: the map's thread makes what finished durable one last time (the map is complete if every chunk
    /// is), closes the file, then calls <paramref name="then"/> on that thread.
    /// </summary>
    internal void Close(Action then)
    {
        _afterClose = then;
        _closed = true;
        if (_thread == null) Start(0);
        _closing.Set();
    }

    private void Run()
    {
        bool last = false;
        while (!last)
        {
            last = _closing.Wait(FlushInterval);
            try
            {
                FlushFinished();
            }
            catch (Exception ex) when (ex is IOException or KcopydException)
            {
                Warn(ex.Message);
            }
        }
        _file.Dispose();
        _closing.Dispose();
        _afterClose?.Invoke();
    }

    /// <summary>Flushes the destinations, then marks what had finished before it in the map and syncs the map.</summary>
    private void FlushFinished()
    {
        long[] ready;
        lock (_lock)
        {
            if (_pending.Count == 0) return;
            ready = _pending.ToArray();
            _pending.Clear();
        }
        string? failed = FlushDestinations();
        if (failed != null)
        {
            lock (_lock) _pending.InsertRange(0, ready); // not durable on every destination: not marked
            Warn(failed);
            return;
        }
        CopyMapHeader header;
        byte[] bits;
        lock (_lock)
        {
            foreach (long c in ready) _bits[c >> 3] |= (byte)(1 << (int)(c & 7));
            header = _header = _header with { Generation = _header.Generation + 1 };
            bits = (byte[])_bits.Clone();
        }
        WriteSlot(header, bits);
        Interlocked.Add(ref _chunksDurable, ready.Length);
    }

    /// <summary>Null when every destination flushed, else what failed.</summary>
    private string? FlushDestinations()
    {
        var flush = new DeviceFlush(_destinations.Count);
        for (int i = 0; i < _destinations.Count; i++)
        {
            try
            {
                _destinations[i].Device.Submit(new BlockRequest(BlockOperation.Flush, 0, 0, IoBuffers.None, flush, i), _queue);
            }
            catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
            {
                flush.Completed(i, Errno.EIO);
            }
        }
        if (!flush.Wait(DeviceFlushTimeout))
            return $"Flushing the destinations took longer than {DeviceFlushTimeout.TotalSeconds:0} s: the copy map '{Path}' was not updated.";
        if (flush.FirstFailed is { } i2)
            return $"Flushing '{_destinations[i2].Device.Name}' failed ({Errno.DescribeNamed(flush.Errno)}): the copy map '{Path}' was not updated.";
        return null;
    }

    /// <summary>Generation g goes to slot g % 2, so the newest slot that checks is never the one being written.</summary>
    private void WriteSlot(CopyMapHeader header, byte[] bits)
    {
        byte[] slot = CopyMapFormat.Encode(header, bits);
        RandomAccess.Write(_file.Handle, slot, (long)(header.Generation % 2) * _slotBytes);
        if (LibC.fdatasync((int)_file.Handle.DangerousGetHandle()) != 0)
            throw new IOException($"fdatasync of the copy map '{Path}' failed: {Errno.Describe(Errno.Last)}.");
    }

    private void Warn(string message)
    {
        lock (_warnings) if (_warnings.Count < 8) _warnings.Add(message);
    }

    private long ChunkLength(long c) => Math.Min(ChunkBytes, _header.LengthBytes - c * ChunkBytes);

    private static bool IsSet(byte[] bits, long c) => (bits[c >> 3] & (1 << (int)(c & 7))) != 0;

    private static CopyMapHeader Describe(CopyRequest request, long chunkBytes)
    {
        var source = request.Source!;
        return new CopyMapHeader(0, chunkBytes, (request.LengthBytes + chunkBytes - 1) / chunkBytes, request.LengthBytes,
            new CopyMapDevice(LegIdentity.Of(source), source.SizeBytes, request.SourceOffsetBytes),
            request.Destinations.Select(d => new CopyMapDevice(LegIdentity.Of(d.Device), d.Device.SizeBytes, d.OffsetBytes)).ToArray());
    }

    private static string Difference(CopyMapHeader found, CopyMapHeader expected)
    {
        static string Of(CopyMapDevice d) => $"{d.StableId} ({d.SizeBytes} bytes) at {d.OffsetBytes}";
        if (found.Source != expected.Source) return $"it is for the source {Of(found.Source)}, not {Of(expected.Source)}";
        if (found.Destinations.Count != expected.Destinations.Count)
            return $"it is for {found.Destinations.Count} destinations, not {expected.Destinations.Count}";
        for (int i = 0; i < found.Destinations.Count; i++)
            if (found.Destinations[i] != expected.Destinations[i])
                return $"its destination {i + 1} is {Of(found.Destinations[i])}, not {Of(expected.Destinations[i])}";
        return $"it is for a region of {found.LengthBytes} bytes, not {expected.LengthBytes}";
    }

    private static KcopydException Mismatch(string path, string why)
        => new("MapMismatch", KcopydErrorKind.InvalidArgument,
            $"The copy map '{path}' belongs to another copy: {why}. Nothing was written; give this copy a map of its own (or remove that one).", path);

    /// <summary>A map given as a symbolic link is refused outright: root writes only where the caller named.</summary>
    private static unsafe void RefuseLink(string path)
    {
        byte[] name = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        stat st;
        fixed (byte* p = name)
            if (LibC.lstat(p, &st) != 0) return; // absent (created below), or LogFile says why
        if (((ushort)st.st_mode & (uint)(ushort)LibC.S_IFMT) == (uint)LibC.S_IFLNK)
            throw new KcopydException("InvalidMapPath", KcopydErrorKind.InvalidArgument,
                $"Refusing the copy map '{path}': it is a symbolic link; name the file itself.", path);
    }

    /// <summary>
    /// A map that is one of the copy's devices (or the file under a loop device), or lies on a filesystem on one, would
    /// change the source mid-copy or be overwritten by the copy: refused before the file is created, read or locked.
    /// </summary>
    private static Action<DeviceIdentity?, ulong> PlacementCheck(CopyRequest request, string path) => (file, filesystemDevice) =>
    {
        var (filesystem, filesystemLength) = StorageResolver.ExtentOf(filesystemDevice);
        foreach (var device in request.Destinations.Select(d => d.Device).Prepend(request.Source!))
        {
            var storage = device.Storage;
            bool onIt = (file is { } identity && (storage.Base == identity || device.Identity == identity))
                || (storage.Base == filesystem.Base
                    && storage.OffsetBytes < filesystem.OffsetBytes + filesystemLength && filesystem.OffsetBytes < storage.OffsetBytes + device.SizeBytes);
            if (onIt)
                throw new KcopydException("InvalidMapPath", KcopydErrorKind.InvalidArgument,
                    $"Refusing the copy map '{path}': it is stored on '{device.Name}', a device of this copy.", path);
        }
    };

    /// <summary>Waits for one flush per destination.</summary>
    private sealed class DeviceFlush(int devices) : IBlockCompletion
    {
        private readonly CountdownEvent _left = new(devices);
        private int _firstFailed = -1;

        public int Errno { get; private set; }

        public int? FirstFailed => _firstFailed < 0 ? null : _firstFailed;

        public void Completed(int tag, int error)
        {
            if (error != 0 && Interlocked.CompareExchange(ref _firstFailed, tag, -1) == -1) Errno = error;
            _left.Signal();
        }

        public bool Wait(TimeSpan timeout) => _left.Wait(timeout);
    }
}
