using System.Runtime.InteropServices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Memory;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Trust;

/// <summary>
/// Receives one chunk of every input, in region order, on the reader's calling thread: its offset in the region, its
/// length, and input i's bytes of it at buffers[i] (valid only during the call).
/// </summary>
public delegate void ChunkHandler(long relativeOffsetBytes, int lengthBytes, ReadOnlySpan<nint> buffers);

/// <summary>
/// Reads one region of several inputs side by side: a bounded pool of aligned pages (direct I/O), its own I/O
/// queue, and several chunks in flight on every input at once, handed to the caller strictly in order so that what
/// it finds comes out sorted. Nothing here writes.
/// </summary>
public sealed unsafe class RegionReader : IDisposable
{
    public const int DefaultChunkSizeBytes = 1 << 20;

    /// <summary>What all chunks in flight may hold together, whatever the number of inputs.</summary>
    public const long MemoryBudgetBytes = 32L << 20;

    /// <summary>How long a cancelled or failed read waits for I/O still in flight before it leaves the pages to it.</summary>
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(30);

    private readonly IReadOnlyList<RegionInput> _inputs;
    private readonly long _lengthBytes;
    private readonly PagePool _pages;
    private readonly IIoQueue _queue;
    private readonly Slot[] _slots;
    private bool _abandoned;

    public RegionReader(IReadOnlyList<RegionInput> inputs, long lengthBytes, int chunkSizeBytes = DefaultChunkSizeBytes, string name = "compare")
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inputs.Count, 1);
        if (chunkSizeBytes < PagePool.Alignment || chunkSizeBytes % PagePool.Alignment != 0)
            throw new ArgumentOutOfRangeException(nameof(chunkSizeBytes), chunkSizeBytes, $"A chunk is a positive multiple of {PagePool.Alignment} bytes.");
        _inputs = inputs;
        _lengthBytes = lengthBytes;
        ChunkSizeBytes = chunkSizeBytes;
        // Two at least, so one chunk is read while the other is looked at; more while the budget allows.
        int inFlight = (int)Math.Clamp(MemoryBudgetBytes / ((long)chunkSizeBytes * inputs.Count), 2, 32);
        ChunksInFlight = (int)Math.Min(inFlight, Math.Max(1, (lengthBytes + chunkSizeBytes - 1) / chunkSizeBytes));
        _pages = new PagePool(ChunksInFlight * inputs.Count, chunkSizeBytes);
        _queue = IoQueueFactory.Create(name, ChunksInFlight * inputs.Count);
        _slots = new Slot[ChunksInFlight];
        for (int s = 0; s < _slots.Length; s++) _slots[s] = new Slot(this, s);
    }

    public int ChunkSizeBytes { get; }

    public int ChunksInFlight { get; }

    /// <summary>
    /// Reads the whole region, handing each chunk to <paramref name="handler"/> in order. Stops issuing when the handler
    /// asks (<paramref name="stop"/>), when cancelled, or at a read error (ReadFailed), and returns only when no I/O
    /// of it is in flight. Returns the bytes handed over.
    /// </summary>
    public long Read(ChunkHandler handler, CancellationToken cancellation, Func<bool>? stop = null)
    {
        long nextOffset = 0, handed = 0;
        int issued = 0, finished = 0;
        var buffers = new nint[_inputs.Count];
        try
        {
            while (issued < _slots.Length && nextOffset < _lengthBytes) Issue(_slots[issued++ % _slots.Length], ref nextOffset);
            while (finished < issued)
            {
                var slot = _slots[finished % _slots.Length];
                slot.Done.Wait(cancellation);
                finished++;
                slot.ThrowIfFailed();
                for (int i = 0; i < buffers.Length; i++) buffers[i] = slot.Buffer(i);
                handler(slot.OffsetBytes, slot.LengthBytes, buffers);
                handed += slot.LengthBytes;
                if (stop?.Invoke() == true) break;
                cancellation.ThrowIfCancellationRequested();
                if (nextOffset < _lengthBytes)
                {
                    Issue(slot, ref nextOffset);
                    issued++;
                }
            }
            return handed;
        }
        finally
        {
            // Every chunk still in flight targets the pool's pages: they are freed only once it is back.
            long deadline = Environment.TickCount64 + (long)DrainTimeout.TotalMilliseconds;
            for (; finished < issued; finished++)
            {
                if (!_slots[finished % _slots.Length].Done.Wait(TimeSpan.FromMilliseconds(Math.Max(0, deadline - Environment.TickCount64))))
                {
                    _abandoned = true;
                    break;
                }
            }
        }
    }

    private void Issue(Slot slot, ref long nextOffset)
    {
        int length = (int)Math.Min(ChunkSizeBytes, _lengthBytes - nextOffset);
        slot.Arm(nextOffset, length);
        nextOffset += length;
        for (int i = 0; i < _inputs.Count; i++)
        {
            var input = _inputs[i];
            try
            {
                // May block (a mirror's request pool): only this reader waits.
                input.Device.Submit(new BlockRequest(BlockOperation.Read, input.OffsetBytes + slot.OffsetBytes, length, slot.Vector(i), slot, i), _queue);
            }
            catch (Exception)
            {
                slot.Completed(i, Errno.EIO); // a device that cannot take the request (closed) fails this read only
            }
        }
        slot.ReleaseIssuer();
    }

    /// <summary>
    /// Frees the pages and the queue. If I/O never came back from a device (a hung one), both are left to it: freed
    /// memory must never receive a late read.
    /// </summary>
    public void Dispose()
    {
        if (_abandoned) return;
        _queue.Dispose();
        foreach (var slot in _slots) slot.Dispose();
        _pages.Dispose();
    }

    /// <summary>One chunk of every input in flight: a page per input, and the count of its reads not yet back.</summary>
    private sealed class Slot : IBlockCompletion, IDisposable
    {
        private readonly RegionReader _reader;
        private readonly int[] _pages;
        private readonly IoVec* _vectors;
        private int _pending;
        private int _errno;
        private int _failedInput;

        public Slot(RegionReader reader, int index)
        {
            _reader = reader;
            int count = reader._inputs.Count;
            _pages = new int[count];
            if (!reader._pages.TryTake(count, _pages)) throw new InvalidOperationException("The reader's pool is smaller than its slots.");
            _vectors = (IoVec*)NativeMemory.Alloc((nuint)count, (nuint)sizeof(IoVec));
            for (int i = 0; i < count; i++) _vectors[i].Base = reader._pages.AddressOf(_pages[i]);
        }

        public ManualResetEventSlim Done { get; } = new(true);

        public long OffsetBytes { get; private set; }

        public int LengthBytes { get; private set; }

        public nint Buffer(int input) => _vectors[input].Base;

        public IoBuffers Vector(int input) => new((nint)(_vectors + input), 1);

        public void Arm(long offsetBytes, int lengthBytes)
        {
            OffsetBytes = offsetBytes;
            LengthBytes = lengthBytes;
            for (int i = 0; i < _pages.Length; i++) _vectors[i].Length = lengthBytes;
            _errno = 0;
            Done.Reset();
            Volatile.Write(ref _pending, _pages.Length + 1); // one held by the issuer until every read is submitted
        }

        public void Completed(int tag, int error)
        {
            if (error != 0 && Interlocked.CompareExchange(ref _errno, error, 0) == 0) _failedInput = tag;
            ReleaseIssuer();
        }

        public void ReleaseIssuer()
        {
            if (Interlocked.Decrement(ref _pending) == 0) Done.Set();
        }

        public void ThrowIfFailed()
        {
            int error = Volatile.Read(ref _errno);
            if (error == 0) return;
            var input = _reader._inputs[_failedInput];
            throw new KcopydException("ReadFailed", KcopydErrorKind.DeviceError,
                $"Reading {LengthBytes} bytes of '{input.Device.Name}' at {input.OffsetBytes + OffsetBytes} failed: {Errno.Describe(error)}.", input.Device.Name);
        }

        public void Dispose()
        {
            _reader._pages.Return(_pages);
            NativeMemory.Free(_vectors);
            Done.Dispose();
        }
    }
}
