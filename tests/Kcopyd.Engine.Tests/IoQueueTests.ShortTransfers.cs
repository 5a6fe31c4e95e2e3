using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// Short transfers on O_DIRECT devices. A healthy loop device never stops inside a block, so the queue's result seam
/// tells it that a whole transfer moved fewer bytes than it did; what these tests prove is where the queue sends the
/// rest, and that a rest that gets no further ends.
/// </summary>
public sealed unsafe partial class IoQueueTests
{
    private const int ShortCount = 6000; // inside the second 4 KiB block

    [Theory]
    [InlineData(IoBackend.IoUring, BlockOperation.Read)]
    [InlineData(IoBackend.IoUring, BlockOperation.Write)]
    [InlineData(IoBackend.Blocking, BlockOperation.Read)]
    [InlineData(IoBackend.Blocking, BlockOperation.Write)]
    public void A_short_direct_transfer_sends_the_rest_from_a_block_boundary(IoBackend backend, BlockOperation operation)
    {
        const long offset = 1 << 20;
        const int length = 65536;
        string path = _scratch.Loop("short.img", 4 << 20, logicalBlockSize: 4096);
        using var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite);
        Assert.True(device.IsDirect);
        using var queue = IoQueueFactory.Create("short", 4, backend);
        using var buffer = new NativeBuffer(length);
        Scratch.FillRandom(path, offset, length, seed: 21);
        new Random(22).NextBytes(buffer.Span);
        byte[] expected = operation == BlockOperation.Read ? Scratch.Read(path, offset, length) : buffer.Span.ToArray();
        int attempts = 0;
        SetResultOverride(queue, (_, result) => Interlocked.Increment(ref attempts) == 1 ? ShortCount : result);

        // Sent from byte 6000 the rest would be unaligned, and O_DIRECT refuses it with EINVAL.
        Assert.Equal(0, buffer.Run(device, queue, operation, offset, length));
        Assert.Equal(2, attempts);
        byte[] actual = operation == BlockOperation.Read ? buffer.Span.ToArray() : Scratch.Read(path, offset, length);
        Assert.Equal(expected, actual);
    }

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void A_short_transfer_that_never_gets_a_block_further_ends_with_EIO(IoBackend backend)
    {
        string path = _scratch.Loop("stall.img", 4 << 20, logicalBlockSize: 4096);
        using var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite);
        using var queue = IoQueueFactory.Create("stall", 4, backend);
        using var buffer = new NativeBuffer(65536);
        int attempts = 0;
        // Every attempt moves less than a block: rounded down to the block, the rest starts where it started.
        SetResultOverride(queue, (_, result) =>
        {
            Interlocked.Increment(ref attempts);
            return result > 0 ? 1000 : result;
        });

        Assert.Equal(Errno.EIO, buffer.Run(device, queue, BlockOperation.Read, 0, 65536));
        Assert.Equal(TransferProgress.MaxStalls, Volatile.Read(ref attempts));
    }

    [Fact]
    public void A_request_is_aligned_to_the_largest_power_of_two_dividing_its_offset_length_and_vectors()
    {
        var vector = new IoVec { Base = 0x10000, Length = 1536 };
        var request = new BlockRequest(BlockOperation.Read, 512 * 3, 1536, new IoBuffers((nint)(&vector), 1), null!, 0);
        Assert.Equal(512, TransferProgress.AlignmentOf(request));

        vector.Length = 1 << 20;
        request = request with { OffsetBytes = 1 << 21, LengthBytes = 1 << 20 };
        Assert.Equal(Environment.SystemPageSize, TransferProgress.AlignmentOf(request));
    }

    private static void SetResultOverride(IIoQueue queue, Func<BlockRequest, int, int> change)
    {
        switch (queue)
        {
            case IoUringQueue ring: ring.ResultOverride = change; break;
            case BlockingIoQueue blocking: blocking.ResultOverride = change; break;
            default: throw new InvalidOperationException($"Unknown queue {queue.GetType()}");
        }
    }
}
