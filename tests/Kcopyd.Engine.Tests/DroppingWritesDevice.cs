using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// A real device that silently loses writes: a write (or zeroing) that touches one of the given ranges completes
/// with success and never reaches the device, as a disk with a lying cache or a broken controller would do.
/// </summary>
internal sealed class DroppingWritesDevice(IBlockDevice inner, params (long Offset, long Length)[] dropped) : DelegatingDevice(inner)
{
    public override void Submit(in BlockRequest request, IIoQueue queue)
    {
        if (request.Operation != BlockOperation.Read && request.Operation != BlockOperation.Flush && Touches(request))
        {
            request.Completion.Completed(request.Tag, 0);
            return;
        }
        Inner.Submit(request, queue);
    }

    private bool Touches(in BlockRequest request)
    {
        long start = request.OffsetBytes, end = request.OffsetBytes + request.LengthBytes;
        return dropped.Any(d => d.Offset < end && start < d.Offset + d.Length);
    }
}

/// <summary>A real device that counts the bytes each kind of request asked for, and passes on whether a range is a hole.</summary>
internal sealed class CountingDevice(IBlockDevice inner) : DelegatingDevice(inner), IBlockDevice
{
    private readonly long[] _bytes = new long[Enum.GetValues<BlockOperation>().Length];

    public long BytesOf(BlockOperation operation) => Interlocked.Read(ref _bytes[(int)operation]);

    public (bool IsHole, long LengthBytes) ExtentAt(long offsetBytes, long maxBytes) => Inner.ExtentAt(offsetBytes, maxBytes);

    public override void Submit(in BlockRequest request, IIoQueue queue)
    {
        Interlocked.Add(ref _bytes[(int)request.Operation], request.LengthBytes);
        Inner.Submit(request, queue);
    }
}

/// <summary>A real device whose reads report success without putting a byte into the caller's buffers.</summary>
internal sealed class UnfilledReadsDevice(IBlockDevice inner) : DelegatingDevice(inner)
{
    public override void Submit(in BlockRequest request, IIoQueue queue)
    {
        if (request.Operation == BlockOperation.Read) request.Completion.Completed(request.Tag, 0);
        else Inner.Submit(request, queue);
    }
}
