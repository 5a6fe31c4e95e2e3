using System.Numerics;
using System.Runtime.InteropServices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// Consecutive pieces of one write, routed to the same legs, sent to each leg as one I/O: a request is cut at
/// region boundaries only to be routed and counted, so a 2 MiB write in 512 KiB regions still reaches each leg
/// as one 2 MiB write, as a copy to the legs would, not as four. Each leg's end is every piece's end on that leg.
/// </summary>
internal sealed unsafe class LegSpan : IBlockCompletion
{
    private readonly RegionIo[] _pieces;
    private IoVec* _ownVectors;
    private int _legsLeft;

    /// <param name="pieces">In order, each starting where the one before ends, all of one request.</param>
    /// <param name="targets">The legs each piece goes to.</param>
    public LegSpan(RegionIo[] pieces, ulong targets)
    {
        _pieces = pieces;
        _legsLeft = BitOperations.PopCount(targets);
        var first = pieces[0];
        var last = pieces[^1];
        OffsetBytes = first.OffsetBytes;
        LengthBytes = last.OffsetBytes + last.LengthBytes - first.OffsetBytes;
        var whole = first.Parent.Request;
        Buffers = OffsetBytes == whole.OffsetBytes && LengthBytes == whole.LengthBytes ? whole.Buffers : JoinBuffers(pieces);
    }

    public long OffsetBytes { get; }

    public long LengthBytes { get; }

    public IoBuffers Buffers { get; }

    public static bool Continues(RegionIo previous, RegionIo next)
        => ReferenceEquals(previous.Parent, next.Parent) && next.OffsetBytes == previous.OffsetBytes + previous.LengthBytes;

    /// <summary>
    /// A leg's end, on whichever thread finished it. The pieces hear of it first; their vectors stay theirs, and the
    /// span's joined ones are freed once every leg has ended (no piece ends before that: each waits for every leg).
    /// </summary>
    public void Completed(int tag, int error)
    {
        foreach (var piece in _pieces) piece.Completed(tag, error);
        if (Interlocked.Decrement(ref _legsLeft) == 0 && _ownVectors != null)
        {
            NativeMemory.Free(_ownVectors);
            _ownVectors = null;
        }
    }

    /// <summary>The pieces' vectors one after the other: a part of the request, which its own vectors do not describe.</summary>
    private IoBuffers JoinBuffers(RegionIo[] pieces)
    {
        int count = 0;
        foreach (var piece in pieces) count += piece.Buffers.Count;
        if (count == 0) return IoBuffers.None;
        _ownVectors = (IoVec*)NativeMemory.Alloc((nuint)count, (nuint)sizeof(IoVec));
        int n = 0;
        foreach (var piece in pieces)
        {
            var vectors = (IoVec*)piece.Buffers.Vectors;
            for (int i = 0; i < piece.Buffers.Count; i++) _ownVectors[n++] = vectors[i];
        }
        return new IoBuffers((nint)_ownVectors, count);
    }
}
