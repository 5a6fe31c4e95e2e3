using Kcopyd.Engine.Native;
using Tmds.Linux;

namespace Kcopyd.Engine.Io;

/// <summary>
/// One io_uring instance: the ring fd and the three shared mappings (SQ ring, CQ ring, SQE array), with the
/// head/tail protocol the kernel expects. It knows nothing about requests; <see cref="IoUringQueue"/> does.
/// </summary>
/// <remarks>
/// Not thread-safe: the ring belongs to one thread, which fills SQEs, enters the kernel and consumes CQEs. That is
/// also what the kernel wants: a request is tied to the task that submitted it (its async workers and its completion
/// work), so a submitter that exits before its requests finish sees them fail with EFAULT or ECANCELED.
/// </remarks>
internal sealed unsafe class IoUringRing : IDisposable
{
    private readonly int _fd;
    private readonly byte* _sqRing;
    private readonly nuint _sqRingBytes;
    private readonly byte* _cqRing;            // the same mapping as _sqRing with IORING_FEAT_SINGLE_MMAP
    private readonly nuint _cqRingBytes;
    private readonly io_uring_sqe* _sqes;
    private readonly nuint _sqesBytes;

    private readonly uint* _sqHead;            // written by the kernel as it consumes SQEs
    private readonly uint* _sqTail;            // written by us: SQEs up to here are ready
    private readonly uint _sqMask;
    private readonly uint* _cqHead;            // written by us: CQEs up to here are consumed
    private readonly uint* _cqTail;            // written by the kernel as it posts CQEs
    private readonly uint _cqMask;
    private readonly io_uring_cqe* _cqes;

    private uint _sqTailLocal;
    private bool _disposed;

    private IoUringRing(int fd, in io_uring_params p, byte* sqRing, nuint sqRingBytes, byte* cqRing, nuint cqRingBytes,
        io_uring_sqe* sqes, nuint sqesBytes)
    {
        _fd = fd;
        _sqRing = sqRing;
        _sqRingBytes = sqRingBytes;
        _cqRing = cqRing;
        _cqRingBytes = cqRingBytes;
        _sqes = sqes;
        _sqesBytes = sqesBytes;
        SqEntries = p.sq_entries;

        _sqHead = (uint*)(sqRing + p.sq_off.head);
        _sqTail = (uint*)(sqRing + p.sq_off.tail);
        _sqMask = *(uint*)(sqRing + p.sq_off.ring_mask);
        _cqHead = (uint*)(cqRing + p.cq_off.head);
        _cqTail = (uint*)(cqRing + p.cq_off.tail);
        _cqMask = *(uint*)(cqRing + p.cq_off.ring_mask);
        _cqes = (io_uring_cqe*)(cqRing + p.cq_off.cqes);
        _sqTailLocal = *_sqTail;

        // The SQ ring holds indices into the SQE array. Mapping slot i to SQE i once, here, lets the submitter
        // write the SQE in place and only move the tail afterwards.
        uint* array = (uint*)(sqRing + p.sq_off.array);
        for (uint i = 0; i < SqEntries; i++) array[i] = i;
    }

    public int Fd => _fd;

    public uint SqEntries { get; }

    /// <summary>SQEs published but not yet consumed by the kernel.</summary>
    public uint Unsubmitted => Volatile.Read(ref *_sqTail) - Volatile.Read(ref *_sqHead);

    /// <summary>
    /// Creates a ring of at least <paramref name="entries"/> SQ entries, owned by the calling thread. Returns 0, or the
    /// errno of the failing call.
    /// </summary>
    public static int TryCreate(uint entries, out IoUringRing? ring)
    {
        ring = null;
        io_uring_params p = default;
        // CLAMP: a depth above the kernel's limit gets the limit instead of EINVAL.
        p.flags = LibC.IORING_SETUP_CLAMP;
        int fd = LibC.io_uring_setup(entries, &p);
        if (fd < 0) return Errno.Last;

        byte* sqRing = null, cqRing = null;
        io_uring_sqe* sqes = null;
        nuint sqRingBytes = p.sq_off.array + (nuint)p.sq_entries * sizeof(uint);
        nuint cqRingBytes = p.cq_off.cqes + (nuint)p.cq_entries * (nuint)sizeof(io_uring_cqe);
        nuint sqesBytes = (nuint)p.sq_entries * (nuint)sizeof(io_uring_sqe);
        bool singleMap = (p.features & LibC.IORING_FEAT_SINGLE_MMAP) != 0;
        if (singleMap) sqRingBytes = cqRingBytes = Math.Max(sqRingBytes, cqRingBytes);

        int error = 0;
        sqRing = Map(fd, sqRingBytes, LibC.IORING_OFF_SQ_RING, ref error);
        if (error == 0) cqRing = singleMap ? sqRing : Map(fd, cqRingBytes, LibC.IORING_OFF_CQ_RING, ref error);
        if (error == 0) sqes = (io_uring_sqe*)Map(fd, sqesBytes, LibC.IORING_OFF_SQES, ref error);
        if (error != 0)
        {
            if (sqRing != null) Unmap(sqRing, sqRingBytes);
            if (cqRing != null && !singleMap) Unmap(cqRing, cqRingBytes);
            LibC.close(fd);
            return error;
        }
        ring = new IoUringRing(fd, p, sqRing, sqRingBytes, cqRing, singleMap ? 0 : cqRingBytes, sqes, sqesBytes);
        return 0;
    }

    private static byte* Map(int fd, nuint bytes, ulong offset, ref int error)
    {
        // MAP_POPULATE: fault the ring in now rather than on the first request.
        void* p = LibC.mmap(null, (size_t)(ulong)bytes, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED | LibC.MAP_POPULATE, fd, (long)offset);
        if (p == LibC.MAP_FAILED)
        {
            error = Errno.Last;
            return null;
        }
        return (byte*)p;
    }

    private static void Unmap(void* p, nuint bytes) => LibC.munmap(p, (size_t)(ulong)bytes);

    /// <summary>The next free SQE, cleared, or null when the SQ ring is full. It reaches the kernel only after <see cref="Publish"/>.</summary>
    public io_uring_sqe* TryGetSqe()
    {
        // Acquire: the kernel has finished reading every SQE before its head, so those may be overwritten.
        if (_sqTailLocal - Volatile.Read(ref *_sqHead) >= SqEntries) return null;
        io_uring_sqe* sqe = &_sqes[_sqTailLocal & _sqMask];
        *sqe = default;
        return sqe;
    }

    /// <summary>Makes the SQE from <see cref="TryGetSqe"/> visible to the kernel at the next <see cref="Enter"/>.</summary>
    public void Publish()
    {
        _sqTailLocal++;
        // Release: the SQE's contents are written before the kernel can see the tail that covers it.
        Volatile.Write(ref *_sqTail, _sqTailLocal);
    }

    /// <summary>io_uring_enter. Returns the SQEs consumed (or 0), or a negative errno.</summary>
    public int Enter(uint toSubmit, uint minComplete, uint flags)
    {
        int rc = LibC.io_uring_enter(_fd, toSubmit, minComplete, flags, null);
        return rc >= 0 ? rc : -Errno.Last;
    }

    /// <summary>CQEs posted and not yet consumed.</summary>
    public uint CompletionsReady => Volatile.Read(ref *_cqTail) - *_cqHead;

    /// <summary>The <paramref name="index"/>th unconsumed CQE; valid until <see cref="ConsumeCompletions"/>.</summary>
    public ref readonly io_uring_cqe PeekCompletion(uint index) => ref _cqes[(*_cqHead + index) & _cqMask];

    /// <summary>Gives <paramref name="count"/> CQEs back to the kernel.</summary>
    public void ConsumeCompletions(uint count)
    {
        // Release: our reads of those CQEs are done before the kernel may reuse their slots.
        Volatile.Write(ref *_cqHead, *_cqHead + count);
    }

    /// <summary>Unmaps the rings and closes the fd. The caller has made sure nothing is in flight.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Unmap(_sqes, _sqesBytes);
        if (_cqRing != _sqRing) Unmap(_cqRing, _cqRingBytes);
        Unmap(_sqRing, _sqRingBytes);
        LibC.close(_fd);
    }

    /// <summary>Fills an SQE for a vectored read or write at <paramref name="offsetBytes"/>.</summary>
    public static void PrepareVectored(io_uring_sqe* sqe, byte opcode, int fd, nint vectors, int count, long offsetBytes, ulong userData)
    {
        sqe->opcode = opcode;
        sqe->fd = fd;
        sqe->addr = (ulong)vectors;
        sqe->len = (uint)count;
        sqe->off = (ulong)offsetBytes;
        sqe->user_data = userData;
    }

    public static void PrepareFsync(io_uring_sqe* sqe, int fd, uint fsyncFlags, ulong userData)
    {
        sqe->opcode = LibC.IORING_OP_FSYNC;
        sqe->fd = fd;
        sqe->fsync_flags = fsyncFlags;
        sqe->user_data = userData;
    }

    /// <summary>
    /// A timer that completes (with -ETIME) after <paramref name="delay"/>, which the kernel reads when the SQE is
    /// submitted: it must stay valid until then.
    /// </summary>
    public static void PrepareTimeout(io_uring_sqe* sqe, KernelTimespec* delay, ulong userData)
    {
        sqe->opcode = LibC.IORING_OP_TIMEOUT;
        sqe->fd = -1;
        sqe->addr = (ulong)delay;
        sqe->len = 1;
        sqe->off = 0; // no completion count: a pure timer
        sqe->user_data = userData;
    }

    /// <summary>A one-shot poll for <paramref name="events"/> on <paramref name="fd"/>: it completes once the fd is ready.</summary>
    public static void PreparePoll(io_uring_sqe* sqe, int fd, ushort events, ulong userData)
    {
        sqe->opcode = LibC.IORING_OP_POLL_ADD;
        sqe->fd = fd;
        sqe->poll_events = events;
        sqe->user_data = userData;
    }
}

/// <summary>The kernel's <c>struct __kernel_timespec</c>: 64-bit seconds and nanoseconds on every architecture.</summary>
internal struct KernelTimespec
{
    public long Seconds;
    public long Nanoseconds;
}
