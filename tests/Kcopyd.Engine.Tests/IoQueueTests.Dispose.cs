using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// Disposing a queue while others still submit to it, twice, or from its own completion: every late request is
/// refused as disposed, every accepted one completes before Dispose returns, and nothing is ever half torn down.
/// </summary>
public sealed unsafe partial class IoQueueTests
{
    private const int RaceRounds = 20;
    private const int RaceSubmitters = 4;

    [Theory]
    [InlineData(IoBackend.Blocking, BlockOperation.Read)]
    [InlineData(IoBackend.IoUring, BlockOperation.Read)]
    [InlineData(IoBackend.IoUring, BlockOperation.WriteZeroes)] // the ring's own blocking queue
    public void A_submit_racing_dispose_completes_before_dispose_returns_or_is_refused_as_disposed(IoBackend backend, BlockOperation operation)
    {
        string path = _scratch.Image("submit-race.img", 1 << 20);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        using var buffer = new NativeBuffer(4096);
        var request = new BlockRequest(operation, 0, 4096, operation == BlockOperation.Read ? buffer.Buffers : IoBuffers.None, null!, 0);

        for (int round = 0; round < RaceRounds; round++)
        {
            var queue = IoQueueFactory.Create("submit-race", 4, backend);
            var tally = new Tally();
            long accepted = 0;
            Exception? wrong = null;
            using var started = new CountdownEvent(RaceSubmitters);
            var submitters = Enumerable.Range(0, RaceSubmitters).Select(_ => new Thread(() =>
            {
                started.Signal();
                try
                {
                    while (true)
                    {
                        queue.Submit(Fd(file), false, request with { Completion = tally });
                        Interlocked.Increment(ref accepted);
                    }
                }
                catch (ObjectDisposedException)
                {
                    // refused: the one answer a late request may get
                }
                catch (Exception ex)
                {
                    Interlocked.CompareExchange(ref wrong, ex, null);
                }
            })).ToArray();
            foreach (var thread in submitters) thread.Start();
            Assert.True(started.Wait(Bounded));
            Thread.Sleep(round % 4);

            queue.Dispose();
            long completedByDispose = Interlocked.Read(ref tally.Count);

            foreach (var thread in submitters) Assert.True(thread.Join(Bounded), "a submitter never saw the queue disposed");
            Assert.Null(wrong);
            Assert.Equal(Interlocked.Read(ref accepted), completedByDispose);
            Assert.Equal(0, Interlocked.Read(ref tally.Errors));
        }
    }

    [Theory]
    [InlineData(IoBackend.Blocking)]
    [InlineData(IoBackend.IoUring)]
    public void Dispose_may_be_called_again_and_from_two_threads_at_once(IoBackend backend)
    {
        var queue = IoQueueFactory.Create("dispose-twice", 4, backend);
        Exception? wrong = null;
        var disposers = Enumerable.Range(0, 2).Select(_ => new Thread(() =>
        {
            try
            {
                queue.Dispose();
            }
            catch (Exception ex)
            {
                Interlocked.CompareExchange(ref wrong, ex, null);
            }
        })).ToArray();

        foreach (var thread in disposers) thread.Start();
        foreach (var thread in disposers) Assert.True(thread.Join(Bounded), "a Dispose never returned");
        queue.Dispose();

        Assert.Null(wrong);
        Assert.Throws<ObjectDisposedException>(() => queue.Submit(0, false, new BlockRequest(BlockOperation.Flush, 0, 0, IoBuffers.None, new Tally(), 0)));
    }

    [Theory]
    [InlineData(IoBackend.Blocking, BlockOperation.Read)]
    [InlineData(IoBackend.IoUring, BlockOperation.Read)]
    [InlineData(IoBackend.IoUring, BlockOperation.WriteZeroes)]
    public void Dispose_from_a_completion_of_the_queue_fails_at_once_instead_of_waiting_for_itself(IoBackend backend, BlockOperation operation)
    {
        string path = _scratch.Image("dispose-inside.img", 1 << 20);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        using var buffer = new NativeBuffer(4096);
        var queue = IoQueueFactory.Create("dispose-inside", 4, backend);
        var inside = new DisposingCompletion(queue);

        queue.Submit(Fd(file), false, new BlockRequest(operation, 0, 4096, operation == BlockOperation.Read ? buffer.Buffers : IoBuffers.None, inside, 0));

        // Waiting for itself, the completion would never return, and neither would any later Dispose.
        Assert.True(inside.Returned.Wait(Bounded), "Dispose inside the completion never returned");
        queue.Dispose();
        Assert.IsType<InvalidOperationException>(inside.Error);
    }

    /// <summary>Counts completions; no asserting here, on the queue's thread an exception would end the process.</summary>
    private sealed class Tally : IBlockCompletion
    {
        public long Count;
        public long Errors;

        public void Completed(int tag, int error)
        {
            if (error != 0) Interlocked.Increment(ref Errors);
            Interlocked.Increment(ref Count);
        }
    }

    /// <summary>Disposes the queue from inside its own completion and keeps what that threw.</summary>
    private sealed class DisposingCompletion(IIoQueue queue) : IBlockCompletion
    {
        public ManualResetEventSlim Returned { get; } = new();

        public Exception? Error { get; private set; }

        public void Completed(int tag, int error)
        {
            try
            {
                queue.Dispose();
            }
            catch (Exception ex)
            {
                Error = ex;
            }
            Returned.Set();
        }
    }
}
