using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// Transient errors from the kernel. No healthy device returns EAGAIN or ECANCELED on demand, so the queue's result
/// seam turns real completions into them; the tests prove what the queue does with such a result.
/// </summary>
public sealed unsafe partial class IoQueueTests
{
    private const int EAGAIN = 11;

    [Theory]
    [InlineData(IoBackend.IoUring, EAGAIN)]
    [InlineData(IoBackend.IoUring, Errno.ECANCELED)]
    [InlineData(IoBackend.Blocking, EAGAIN)]
    public void A_transient_error_is_sent_again_until_the_request_succeeds(IoBackend backend, int errno)
    {
        string path = _scratch.Image("transient.img", 1 << 20);
        Scratch.FillRandom(path, 0, 1 << 20, seed: 31);
        using var queue = IoQueueFactory.Create("transient", 4, backend);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        using var buffer = new NativeBuffer(65536);
        int attempts = 0;
        // Every attempt but the last one allowed fails.
        SetResultOverride(queue, (_, result) => Interlocked.Increment(ref attempts) < TransientErrors.MaxAttempts ? -errno : result);

        Assert.Equal(0, buffer.Run(queue, Fd(file), BlockOperation.Read, offsetBytes: 65536, lengthBytes: 65536));
        Assert.Equal(TransientErrors.MaxAttempts, attempts);
        Assert.Equal(Scratch.Read(path, 65536, 65536), buffer.Span.ToArray());
    }

    [Theory]
    [InlineData(IoBackend.IoUring, EAGAIN)]
    [InlineData(IoBackend.IoUring, Errno.ECANCELED)]
    [InlineData(IoBackend.Blocking, EAGAIN)]
    public void A_transient_error_that_persists_is_reported_after_a_bounded_number_of_attempts(IoBackend backend, int errno)
    {
        string path = _scratch.Image("persistent.img", 1 << 20);
        using var queue = IoQueueFactory.Create("persistent", 4, backend);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        using var buffer = new NativeBuffer(4096);
        int attempts = 0;
        SetResultOverride(queue, (_, _) =>
        {
            Interlocked.Increment(ref attempts);
            return -errno;
        });

        Assert.Equal(errno, buffer.Run(queue, Fd(file), BlockOperation.Read, offsetBytes: 0, lengthBytes: 4096));
        Assert.Equal(TransientErrors.MaxAttempts, attempts);
    }

    [Fact]
    public void A_flush_that_meets_EAGAIN_is_sent_again()
    {
        string path = _scratch.Image("flush-again.img", 1 << 20);
        using var queue = IoQueueFactory.Create("flush-again", 4, IoBackend.IoUring);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        using var buffer = new NativeBuffer(4096);
        int attempts = 0;
        SetResultOverride(queue, (_, result) => Interlocked.Increment(ref attempts) == 1 ? -EAGAIN : result);

        Assert.Equal(0, buffer.Run(queue, Fd(file), BlockOperation.Flush, offsetBytes: 0, lengthBytes: 0));
        Assert.Equal(2, attempts);
    }

    [Fact]
    public void ECANCELED_while_the_queue_is_being_disposed_is_reported_at_once()
    {
        string path = _scratch.Image("cancel.img", 1 << 20);
        var queue = IoQueueFactory.Create("cancel", 4, IoBackend.IoUring);
        var ring = Assert.IsType<IoUringQueue>(queue);
        var disposer = new Thread(queue.Dispose);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        using var buffer = new NativeBuffer(4096);
        int attempts = 0;
        try
        {
            // The first completion starts the queue's Dispose, which waits for this request, and turns into ECANCELED
            // once Dispose has begun.
            ring.ResultOverride = (_, _) =>
            {
                if (Interlocked.Increment(ref attempts) == 1) disposer.Start();
                Assert.True(SpinWait.SpinUntil(() => ring.IsDisposing, Bounded), "Dispose never began");
                return -Errno.ECANCELED;
            };

            Assert.Equal(Errno.ECANCELED, buffer.Run(queue, Fd(file), BlockOperation.Read, offsetBytes: 0, lengthBytes: 4096));
            Assert.Equal(1, attempts);
            Assert.True(disposer.Join(Bounded), "Dispose never ended");
        }
        finally
        {
            queue.Dispose();
        }
    }
}
