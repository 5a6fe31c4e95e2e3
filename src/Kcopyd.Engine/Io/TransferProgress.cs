using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Io;

/// <summary>
/// How far a read or write has got, and where the rest of a short transfer starts again: the one rule both
/// backends follow.
/// </summary>
/// <remarks>
/// With O_DIRECT the offset, the length and every buffer address of a transfer must be multiples of the device's
/// logical block size; a rest sent from the exact byte count done fails with EINVAL. The queues do not know the
/// block size, but the request does: its offset, length and vectors are all multiples of it, so the largest power
/// of two that divides them all (at most a page, the largest logical block Linux has) is a multiple of it too.
/// The rest starts from what was done rounded down to that. The bytes sent twice are in the buffer already, so
/// reading or writing them again is harmless.
/// </remarks>
internal unsafe struct TransferProgress
{
    /// <summary>Resubmissions in a row that get no further (a file ending inside a block, say) before EIO.</summary>
    internal const int MaxStalls = 4;

    private static readonly long PageSizeBytes = Environment.SystemPageSize;

    private int _stalls;

    /// <summary>Where the attempt in flight starts, relative to the request: a multiple of its alignment.</summary>
    public long StartBytes { get; private set; }

    /// <summary>
    /// Accounts one attempt that moved <paramref name="transferredBytes"/> from <see cref="StartBytes"/>. Returns true
    /// when the request is over, with <paramref name="error"/> 0 or EIO; false when the rest is to be sent from
    /// the new <see cref="StartBytes"/>.
    /// </summary>
    public bool Account(in BlockRequest request, long transferredBytes, out int error)
    {
        error = 0;
        long doneBytes = StartBytes + transferredBytes;
        if (doneBytes >= request.LengthBytes) return true;
        long resumeBytes = doneBytes & ~(AlignmentOf(request) - 1);
        // Nothing moved: past the end of a file, which the range check should have stopped. No block further
        // again and again: the same rest would come back short for ever.
        if (transferredBytes == 0 || (resumeBytes <= StartBytes && ++_stalls >= MaxStalls))
        {
            error = Errno.EIO;
            return true;
        }
        if (resumeBytes > StartBytes) _stalls = 0;
        StartBytes = resumeBytes;
        return false;
    }

    /// <summary>The largest power of two, at most a page, that divides the request's offset, length and vectors.</summary>
    internal static long AlignmentOf(in BlockRequest request)
    {
        long bits = PageSizeBytes | request.OffsetBytes | request.LengthBytes;
        var vectors = (IoVec*)request.Buffers.Vectors;
        for (int i = 0; i < request.Buffers.Count; i++) bits |= vectors[i].Base | vectors[i].Length;
        return bits & -bits;
    }
}
