using System.Runtime.InteropServices;
using Kcopyd.Engine.Native;
using Tmds.Linux;

namespace Kcopyd.Engine.Io;

/// <summary>
/// The primary backend: a ring of the queue's own, driven by one thread of its own, and a slot per request in flight.
/// Reads and writes go through the ring as READV/WRITEV, flushes as FSYNC(DATASYNC); zeroing and discard, which the
/// ring cannot express (BLKZEROOUT is an ioctl), go to a small blocking queue that belongs to this queue.
/// </summary>
/// <remarks>
/// <para>
/// Callers never touch the ring. <see cref="Submit"/> fills a slot and hands its index to the ring thread, which puts
/// the SQEs on the ring, waits in io_uring_enter and runs the completions. The kernel ties a request to the task that
/// submitted it: its async workers die with that task (a request still queued there fails with EFAULT), and its
/// completion work runs in that task. Submitting from the ring thread makes both depend on a thread that lives exactly
/// as long as the ring and blocks nowhere else, never on the caller (the client's worker may sleep in a device's
/// request pool, a pipeline thread may end).
/// </para>
/// <para>
/// A thread that submits wakes a sleeping ring thread through an eventfd the ring polls (the doorbell); one write
/// covers every request handed over until the ring thread looks again.
/// </para>
/// </remarks>
internal sealed unsafe class IoUringQueue : IIoQueue
{
    /// <summary>user_data of the doorbell poll; never a slot index.</summary>
    private const ulong DoorbellUserData = ulong.MaxValue;

    /// <summary>user_data of a slot's backoff timer: this bit and the slot index.</summary>
    private const ulong RetryUserData = 1UL << 32;

    private const int ZeroingThreads = 2;

    /// <summary>A request in flight. Its index is the SQE's user_data, so nothing is allocated or pinned per request.</summary>
    private struct Slot
    {
        public int Fd;
        public BlockRequest Request;
        public TransferProgress Progress;
        /// <summary>Transient errors met so far (see <see cref="TransientErrors"/>).</summary>
        public int Failures;
        /// <summary>What is left of a short transfer; allocated the first time this slot meets one.</summary>
        public IoVec* Rest;
        public int RestCapacity;
    }

    private readonly record struct Finished(int Slot, IBlockCompletion Completion, int Tag, int Error);

    private readonly record struct Deferred(int Fd, BlockRequest Request);

    private readonly int _depth;
    private readonly Slot[] _slots;
    private readonly BlockingIoQueue _zeroing;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _started = new();

    // Shared with submitters, under _lock: free slots, slots handed over to the ring thread, requests the ring thread
    // itself submitted while every slot was busy, and whether the ring thread is (about to be) asleep.
    private readonly object _lock = new();
    private readonly int[] _freeSlots;
    private int _freeCount;
    private readonly int[] _handedOver;
    private int _handedOverCount;
    private Queue<Deferred>? _deferred;
    private int _waiters;
    private bool _ringSleeping;
    private bool _disposing;

    // The ring thread's own; set up on that thread, before _started is set.
    private IoUringRing? _ring;
    private int _doorbellFd = -1;
    private int _slotCount;
    private int _setupError;
    private int _osThreadId;
    private KernelTimespec* _backoffs; // one per retry, read by the kernel when a timer is submitted
    private readonly int[] _taken;
    private readonly Finished[] _finished;

    private int _disposed;

    private IoUringQueue(string name, int depth)
    {
        Name = name;
        _depth = depth;
        _slots = new Slot[depth];
        _freeSlots = new int[depth];
        _handedOver = new int[depth];
        _taken = new int[depth];
        _finished = new Finished[depth];
        _zeroing = new BlockingIoQueue($"{name}/zero", ZeroingThreads);
        _thread = new Thread(Run) { IsBackground = true, Name = $"kcopyd-uring/{name}" };
        _thread.Start();
        _started.Wait();
    }

    public string Name { get; }

    public string Backend => "io_uring";

    internal int RingFd => _ring!.Fd;

    /// <summary>OS ids of every thread this queue runs: its ring thread and its zeroing threads.</summary>
    internal IReadOnlyList<int> OsThreadIds => [_osThreadId, .. _zeroing.OsThreadIds];

    /// <summary>
    /// Sees the result of every read, write and flush CQE (bytes, or a negative errno) and may replace it, on the ring
    /// thread: a test stands in for a kernel that returns a short transfer or a transient error, which a healthy one
    /// does too rarely to provoke. Set before submitting.
    /// </summary>
    internal Func<BlockRequest, int, int>? ResultOverride { get; set; }

    /// <summary>Dispose has begun: a test waits for this to show that ECANCELED then counts at once.</summary>
    internal bool IsDisposing => Volatile.Read(ref _disposing);

    /// <summary>Creates a queue with a ring of its own. Returns 0, or the errno that says why io_uring is unavailable.</summary>
    public static int TryCreate(string name, int depth, out IoUringQueue? queue)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        queue = new IoUringQueue(name, depth);
        int error = queue._setupError;
        if (error == 0) return 0;
        queue._thread.Join();
        queue._zeroing.Dispose();
        queue._started.Dispose();
        queue = null;
        return error;
    }

    /// <summary>
    /// Hands the request to the ring thread and returns. Waits only while every slot is in flight; on the ring thread
    /// itself (a completion that starts more I/O) it never waits but defers the request to the next free slot.
    /// </summary>
    public void Submit(int fd, bool isBlockDevice, in BlockRequest request)
    {
        if (request.Operation is not (BlockOperation.Read or BlockOperation.Write or BlockOperation.Flush))
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposing), this);
            _zeroing.Submit(fd, isBlockDevice, request);
            return;
        }
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposing, this);
            if (_freeCount == 0)
            {
                if (Thread.CurrentThread == _thread)
                {
                    (_deferred ??= new()).Enqueue(new Deferred(fd, request));
                    return;
                }
                _waiters++;
                try
                {
                    do Monitor.Wait(_lock); while (_freeCount == 0 && !_disposing);
                }
                finally
                {
                    _waiters--;
                }
                ObjectDisposedException.ThrowIf(_disposing, this);
            }
            HandOverLocked(fd, request);
            if (_ringSleeping && Thread.CurrentThread != _thread)
            {
                // Under the lock: once Dispose has set _disposing, no submitter can still be about to write to the eventfd.
                _ringSleeping = false;
                RingDoorbell();
            }
        }
    }

    private void HandOverLocked(int fd, in BlockRequest request)
    {
        int slot = _freeSlots[--_freeCount];
        ref var s = ref _slots[slot];
        s.Fd = fd;
        s.Request = request;
        s.Progress = default;
        s.Failures = 0;
        _handedOver[_handedOverCount++] = slot;
    }

    private void RingDoorbell()
    {
        ulong one = 1;
        while (LibC.write(_doorbellFd, &one, sizeof(ulong)) < 0 && Errno.Last == LibC.EINTR) { }
    }

    private void Run()
    {
        _osThreadId = OsThread.CurrentId();
        _setupError = SetUp();
        _started.Set();
        if (_setupError == 0) Loop();
    }

    /// <summary>Creates the ring on this thread, so the kernel ties it to the thread that will drive it.</summary>
    private int SetUp()
    {
        // One SQ entry beyond the slots for the doorbell poll; the CQ ring (twice the SQ) then can never overflow.
        int error = IoUringRing.TryCreate((uint)_depth + 1, out _ring);
        if (error != 0) return error;
        _doorbellFd = LibC.eventfd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
        if (_doorbellFd < 0)
        {
            error = Errno.Last;
            _ring!.Dispose();
            return error;
        }
        _slotCount = (int)Math.Min((uint)_depth, _ring!.SqEntries - 1);
        for (int i = 0; i < _slotCount; i++) _freeSlots[i] = _slotCount - 1 - i;
        _freeCount = _slotCount;
        _backoffs = (KernelTimespec*)NativeMemory.Alloc(TransientErrors.MaxAttempts, (nuint)sizeof(KernelTimespec));
        for (int failures = 1; failures <= TransientErrors.MaxAttempts; failures++)
            _backoffs[failures - 1] = new KernelTimespec { Nanoseconds = TransientErrors.BackoffMilliseconds(failures) * 1_000_000 };
        ArmDoorbell();
        return 0;
    }

    /// <summary>
    /// Puts handed-over requests on the ring, enters the kernel (waiting only when there is nothing else to do),
    /// and runs what completed, until the queue is disposed and nothing is left in flight.
    /// </summary>
    private void Loop()
    {
        var ring = _ring!;
        while (true)
        {
            int taken;
            lock (_lock)
            {
                taken = _handedOverCount;
                _handedOver.AsSpan(0, taken).CopyTo(_taken);
                _handedOverCount = 0;
                _ringSleeping = false;
            }
            for (int i = 0; i < taken; i++) Prepare(_taken[i]);

            bool wait;
            lock (_lock)
            {
                wait = _handedOverCount == 0 && ring.CompletionsReady == 0;
                if (wait && _disposing && _freeCount == _slotCount && _deferred is not { Count: > 0 }) return;
                // From here a submitter must ring the doorbell: this thread may not look at _handedOver again.
                _ringSleeping = wait;
            }
            uint toSubmit = ring.Unsubmitted;
            if (toSubmit > 0 || wait) Enter(toSubmit, wait ? 1u : 0u);
            Reap();
        }
    }

    private void Enter(uint toSubmit, uint minComplete)
    {
        int rc = _ring!.Enter(toSubmit, minComplete, LibC.IORING_ENTER_GETEVENTS);
        if (rc >= 0 || rc == -LibC.EINTR) return; // EINTR: the runtime signals threads (GC suspension); loop again
        if (rc == -LibC.EAGAIN || rc == -LibC.EBUSY)
        {
            // The kernel is short of request memory for a moment; the SQEs stay on the ring for the next round.
            Thread.Sleep(1);
            return;
        }
        throw new IOException($"io_uring_enter failed on I/O queue '{Name}': {Errno.Describe(-rc)}.");
    }

    /// <summary>The next free SQE; when the SQ ring is full, hands what is on it to the kernel first.</summary>
    private io_uring_sqe* NextSqe()
    {
        while (true)
        {
            io_uring_sqe* sqe = _ring!.TryGetSqe();
            if (sqe != null) return sqe;
            Enter(_ring.Unsubmitted, 0);
        }
    }

    /// <summary>Puts a slot's request (or what is left of it) on the ring.</summary>
    private void Prepare(int slot)
    {
        ref var s = ref _slots[slot];
        var request = s.Request;
        io_uring_sqe* sqe = NextSqe();
        if (request.Operation == BlockOperation.Flush)
        {
            IoUringRing.PrepareFsync(sqe, s.Fd, LibC.IORING_FSYNC_DATASYNC, (ulong)slot);
        }
        else
        {
            nint vectors = request.Buffers.Vectors;
            int count = request.Buffers.Count;
            long startBytes = s.Progress.StartBytes;
            if (startBytes > 0)
            {
                if (s.RestCapacity < count)
                {
                    s.Rest = (IoVec*)NativeMemory.Realloc(s.Rest, (nuint)count * (nuint)sizeof(IoVec));
                    s.RestCapacity = count;
                }
                count = SyncIo.Skip((IoVec*)vectors, count, startBytes, s.Rest);
                vectors = (nint)s.Rest;
            }
            byte opcode = request.Operation == BlockOperation.Read ? LibC.IORING_OP_READV : LibC.IORING_OP_WRITEV;
            IoUringRing.PrepareVectored(sqe, opcode, s.Fd, vectors, count, request.OffsetBytes + startBytes, (ulong)slot);
        }
        _ring!.Publish();
    }

    private void ArmDoorbell()
    {
        IoUringRing.PreparePoll(NextSqe(), _doorbellFd, (ushort)LibC.POLLIN, DoorbellUserData);
        _ring!.Publish();
    }

    /// <summary>
    /// Consumes every CQE there is. A batch's slots are freed before its callbacks run, so a submitter waiting for a
    /// slot goes on while they do.
    /// </summary>
    private void Reap()
    {
        var ring = _ring!;
        uint ready = ring.CompletionsReady;
        if (ready == 0) return;
        int finished = 0;
        bool doorbell = false;
        for (uint i = 0; i < ready; i++)
        {
            ref readonly var cqe = ref ring.PeekCompletion(i);
            if (cqe.user_data == DoorbellUserData)
            {
                doorbell = true;
                continue;
            }
            if ((cqe.user_data & RetryUserData) != 0)
            {
                // Its backoff is over (-ETIME). A kernel without ring timers (before 5.4) fails the timer at once,
                // and the request goes again without a backoff.
                Prepare((int)(cqe.user_data & ~RetryUserData));
                continue;
            }
            int slot = (int)cqe.user_data;
            int res = ResultOverride is { } change ? change(_slots[slot].Request, cqe.res) : cqe.res;
            if (Account(slot, res, out int error))
            {
                ref var s = ref _slots[slot];
                _finished[finished++] = new Finished(slot, s.Request.Completion, s.Request.Tag, error);
                s.Request = default;
            }
        }
        ring.ConsumeCompletions(ready);
        if (doorbell)
        {
            ulong count;
            LibC.read(_doorbellFd, &count, sizeof(ulong)); // empties it, so the new poll waits for the next ring
            ArmDoorbell();
        }
        if (finished == 0) return;

        ReleaseSlots(finished);
        for (int i = 0; i < finished; i++)
        {
            var f = _finished[i];
            _finished[i] = default;
            f.Completion.Completed(f.Tag, f.Error);
        }
    }

    /// <summary>
    /// Accounts one CQE of a slot. Returns true when the request is over (with 0 or a positive errno); false when it
    /// went back on the ring (the rest of a short transfer, an interrupted one, or one that met a transient error and
    /// waits for its backoff).
    /// </summary>
    private bool Account(int slot, int res, out int error)
    {
        ref var s = ref _slots[slot];
        error = 0;
        if (res == -LibC.EINTR)
        {
            Prepare(slot);
            return false;
        }
        if (res < 0)
        {
            if (TransientErrors.IsTransient(-res, Volatile.Read(ref _disposing)) && ++s.Failures < TransientErrors.MaxAttempts)
            {
                RetryLater(slot, s.Failures);
                return false;
            }
            error = -res;
            return true;
        }
        if (s.Request.Operation == BlockOperation.Flush) return true;
        if (s.Progress.Account(s.Request, res, out error)) return true;
        Prepare(slot);
        return false;
    }

    /// <summary>
    /// Puts a slot back on the ring once its backoff is over. A timer on the ring, not a sleep: every other request
    /// of the queue waits on this thread.
    /// </summary>
    private void RetryLater(int slot, int failures)
    {
        IoUringRing.PrepareTimeout(NextSqe(), &_backoffs[failures - 1], RetryUserData | (uint)slot);
        _ring!.Publish();
    }

    /// <summary>Frees the batch's slots, hands deferred requests the freed slots, and wakes whoever waits for one.</summary>
    private void ReleaseSlots(int finished)
    {
        lock (_lock)
        {
            for (int i = 0; i < finished; i++) _freeSlots[_freeCount++] = _finished[i].Slot;
            while (_deferred is { Count: > 0 } && _freeCount > 0)
            {
                var d = _deferred.Dequeue();
                HandOverLocked(d.Fd, d.Request);
            }
            if (_waiters > 0 || _disposing) Monitor.PulseAll(_lock);
        }
    }

    /// <summary>
    /// Refuses new requests, lets those in flight finish (ring and zeroing threads), stops the ring thread, then
    /// unmaps the ring and closes its fd and the doorbell. Not from a completion: neither the ring thread nor a zeroing
    /// thread can wait for itself.
    /// </summary>
    public void Dispose()
    {
        if (Thread.CurrentThread == _thread || _zeroing.IsQueueThread)
            throw new InvalidOperationException($"I/O queue '{Name}' cannot be disposed from its own completion thread.");
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        lock (_lock)
        {
            _disposing = true;
            Monitor.PulseAll(_lock); // submitters waiting for a slot give up
        }
        _zeroing.Dispose();
        RingDoorbell(); // the ring thread looks again, and ends once nothing is in flight
        _thread.Join();
        _ring!.Dispose();
        LibC.close(_doorbellFd);
        NativeMemory.Free(_backoffs);
        for (int i = 0; i < _slots.Length; i++)
        {
            NativeMemory.Free(_slots[i].Rest);
            _slots[i].Rest = null;
        }
        _started.Dispose();
    }
}
