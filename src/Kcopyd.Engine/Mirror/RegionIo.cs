using System.Numerics;
using System.Runtime.InteropServices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// The part of a request that falls in one region (a flush has no region), sent to one or more legs at once.
/// It counts its leg I/Os like a kcopyd sub-job: one extra count held by the issuer, so a leg finishing early
/// cannot end it while the others are still being submitted.
/// </summary>
internal sealed unsafe class RegionIo : IBlockCompletion
{
    private readonly Action<RegionIo> _done;
    private IoVec* _ownVectors;
    private int _pending;
    private long _failedLegs;
    private int _errno;

    public RegionIo(MirrorRequest parent, long region, long offsetBytes, long lengthBytes, Action<RegionIo> done)
    {
        Parent = parent;
        Region = region;
        OffsetBytes = offsetBytes;
        LengthBytes = lengthBytes;
        _done = done;
        Buffers = parent.Request.Buffers;
    }

    public MirrorRequest Parent { get; }

    public BlockOperation Operation => Parent.Operation;

    /// <summary>-1 for a flush.</summary>
    public long Region { get; }

    public long OffsetBytes { get; }

    public long LengthBytes { get; }

    public IoBuffers Buffers { get; private set; }

    /// <summary>The legs the current round of I/O went to.</summary>
    public ulong Targets { get; private set; }

    /// <summary>Legs a read was tried on, so a retry goes somewhere new.</summary>
    public ulong TriedLegs { get; set; }

    /// <summary>Set when the write went to every live leg, clear when only to the default one.</summary>
    public bool IsSyncWrite { get; set; }

    public ulong FailedLegs => (ulong)Interlocked.Read(ref _failedLegs);

    public int Errno => Volatile.Read(ref _errno);

    /// <summary>Points this piece at its own slice of the caller's vectors, when the request spans several regions.</summary>
    public void SliceBuffers(long relativeOffsetBytes)
    {
        if (Parent.Request.Buffers.Count == 0 || (relativeOffsetBytes == 0 && LengthBytes == Parent.Request.LengthBytes)) return;
        var source = (IoVec*)Parent.Request.Buffers.Vectors;
        int count = Parent.Request.Buffers.Count;
        _ownVectors = (IoVec*)NativeMemory.Alloc((nuint)count, (nuint)sizeof(IoVec));
        int n = 0;
        long skip = relativeOffsetBytes, want = LengthBytes;
        for (int i = 0; i < count && want > 0; i++)
        {
            long length = source[i].Length;
            if (skip >= length) { skip -= length; continue; }
            long take = Math.Min(length - skip, want);
            _ownVectors[n].Base = source[i].Base + (nint)skip;
            _ownVectors[n].Length = (nint)take;
            n++;
            want -= take;
            skip = 0;
        }
        Buffers = new IoBuffers((nint)_ownVectors, n);
    }

    /// <summary>Arms a round of I/O to <paramref name="targets"/>; the caller submits to each and then calls <see cref="ReleaseIssuer"/>.</summary>
    public void Begin(ulong targets)
    {
        Targets = targets;
        Interlocked.Exchange(ref _failedLegs, 0);
        Volatile.Write(ref _errno, 0);
        Volatile.Write(ref _pending, BitOperations.PopCount(targets) + 1);
    }

    /// <summary>The end of the I/O on leg <paramref name="tag"/>, on whichever thread finished it.</summary>
    public void Completed(int tag, int error)
    {
        if (error != 0)
        {
            Interlocked.Or(ref _failedLegs, 1L << tag);
            Interlocked.CompareExchange(ref _errno, error, 0);
        }
        if (Interlocked.Decrement(ref _pending) == 0) _done(this);
    }

    public void ReleaseIssuer()
    {
        if (Interlocked.Decrement(ref _pending) == 0) _done(this);
    }

    /// <summary>Ends the piece for good: frees its vectors and tells the caller's request.</summary>
    public void Finish(int errno)
    {
        if (_ownVectors != null)
        {
            NativeMemory.Free(_ownVectors);
            _ownVectors = null;
            Buffers = IoBuffers.None;
        }
        Parent.PieceDone(errno);
    }
}
