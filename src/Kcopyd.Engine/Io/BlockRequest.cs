namespace Kcopyd.Engine.Io;

/// <summary>What a block request does.</summary>
public enum BlockOperation : byte
{
    Read,
    Write,
    /// <summary>Make the range read back as zeros (BLKZEROOUT, fallocate, or written zeros).</summary>
    WriteZeroes,
    /// <summary>Make earlier writes durable (fdatasync).</summary>
    Flush,
    Discard,
    /// <summary>
    /// Make the range read back as zeros and give its space back where the device can (a sparse copy's zero chunks):
    /// fallocate PUNCH_HOLE|KEEP_SIZE on a file, BLKZEROOUT on a block device (which unmaps where the device can),
    /// NBD WRITE_ZEROES. Where none of that works it is WriteZeroes.
    /// </summary>
    PunchZeroes,
}

/// <summary>
/// Receives the end of a block request, exactly once, on whichever thread finished it. That is usually a queue's
/// completion thread, which every other request of the queue waits on: a completion must be short and never block.
/// </summary>
public interface IBlockCompletion
{
    /// <param name="tag">The tag the request was submitted with (a destination index, say).</param>
    /// <param name="error">0 on success, else a positive errno.</param>
    void Completed(int tag, int error);
}

/// <summary>Native buffers of a request: an array of <c>struct iovec</c> in unmanaged memory.</summary>
public readonly record struct IoBuffers(nint Vectors, int Count)
{
    public static IoBuffers None => default;
}

/// <summary>One request against a block device. Offsets and lengths are bytes, aligned to the device's logical block size.</summary>
public readonly record struct BlockRequest(
    BlockOperation Operation,
    long OffsetBytes,
    long LengthBytes,
    IoBuffers Buffers,
    IBlockCompletion Completion,
    int Tag);
