using System.Runtime.InteropServices;
using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Tests;

/// <summary>What the I/O queues promise on their own: errors, flushes, isolation, clean shutdown, backend choice.</summary>
public sealed unsafe partial class IoQueueTests : IDisposable
{
    private const int EBADF = 9;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void A_read_past_the_end_of_a_file_reports_an_errno(IoBackend backend)
    {
        string path = _scratch.Image("short.img", 0);
        File.WriteAllBytes(path, new byte[6000]);
        using var queue = IoQueueFactory.Create("past-end", 4, backend);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        using var buffer = new NativeBuffer(16384);

        // Straddling the end: a short read of 6000 bytes, then nothing. Wholly past it: nothing at once.
        Assert.Equal(Errno.EIO, buffer.Run(queue, Fd(file), BlockOperation.Read, offsetBytes: 0, lengthBytes: 8192));
        Assert.Equal(Errno.EIO, buffer.Run(queue, Fd(file), BlockOperation.Read, offsetBytes: 16384, lengthBytes: 4096));
        Assert.Equal(0, buffer.Run(queue, Fd(file), BlockOperation.Read, offsetBytes: 0, lengthBytes: 4096));
    }

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void A_write_the_kernel_refuses_reports_its_errno(IoBackend backend)
    {
        string path = _scratch.Image("ro.img", 65536);
        using var queue = IoQueueFactory.Create("refused", 4, backend);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        using var buffer = new NativeBuffer(4096);

        Assert.Equal(EBADF, buffer.Run(queue, Fd(file), BlockOperation.Write, offsetBytes: 0, lengthBytes: 4096));
    }

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void A_flush_after_writes_completes_and_the_data_reads_back(IoBackend backend)
    {
        string path = _scratch.Loop("flush.img", 8 << 20);
        using var queue = IoQueueFactory.Create("flush", 8, backend);
        using var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite);
        using var buffer = new NativeBuffer(65536);
        new Random(7).NextBytes(buffer.Span);

        Assert.Equal(0, buffer.Run(device, queue, BlockOperation.Write, offsetBytes: 1 << 20, lengthBytes: 65536));
        Assert.Equal(0, buffer.Run(device, queue, BlockOperation.Flush, offsetBytes: 0, lengthBytes: 0));
        Assert.Equal(buffer.Span.ToArray(), Scratch.Read(path, 1 << 20, 65536));
    }

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void Two_clients_share_no_ring_and_no_thread(IoBackend backend)
    {
        using var a = new CopyClient(new CopyClientOptions { Name = "iso-a", IoBackend = backend });
        using var b = new CopyClient(new CopyClientOptions { Name = "iso-b", IoBackend = backend });

        Assert.NotSame(a.Queue, b.Queue);
        Assert.Empty(OsThreadIds(a.Queue).Intersect(OsThreadIds(b.Queue)));
        if (backend == IoBackend.IoUring)
        {
            var ringA = Assert.IsType<IoUringQueue>(a.Queue);
            var ringB = Assert.IsType<IoUringQueue>(b.Queue);
            Assert.NotEqual(ringA.RingFd, ringB.RingFd);
            Assert.StartsWith("kcopyd-uring/", ThreadName(ringA.OsThreadIds[0]));
        }
    }

    [Theory]
    [InlineData(IoBackend.IoUring, false)]
    [InlineData(IoBackend.IoUring, true)]
    [InlineData(IoBackend.Blocking, false)]
    [InlineData(IoBackend.Blocking, true)]
    public void Dispose_leaves_no_thread_of_the_queue_behind(IoBackend backend, bool afterWork)
    {
        var client = new CopyClient(new CopyClientOptions { Name = "gone", IoBackend = backend, IoDepth = 8 });
        var threads = OsThreadIds(client.Queue);
        Assert.NotEmpty(threads);
        Assert.All(threads, tid => Assert.StartsWith("kcopyd-", ThreadName(tid)));

        if (afterWork)
        {
            string source = _scratch.Image("src.img", 8 << 20);
            string target = _scratch.Image("dst.img", 8 << 20);
            using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
            using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
            var copy = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = 4 << 20 });
            var zero = client.Zero([new CopyDestination(to, 6 << 20)], 1 << 20);
            Assert.True(copy.Wait(Bounded) && zero.Wait(Bounded));
        }
        client.Dispose();

        // Join returns once the managed thread is done; the kernel task ends a moment later.
        Assert.True(SpinWait.SpinUntil(() => threads.All(tid => ThreadName(tid) == null), Bounded),
            $"threads still running: {string.Join(", ", threads.Select(tid => ThreadName(tid)).OfType<string>())}");
    }

    [Fact]
    public void Many_threads_submitting_to_a_small_ring_each_get_exactly_one_completion()
    {
        string path = _scratch.Image("stress.img", 1 << 20);
        Scratch.FillRandom(path, 0, 1 << 20, seed: 9);
        using var queue = IoQueueFactory.Create("stress", 2, IoBackend.IoUring);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        const int threads = 4, perThread = 500;
        var counter = new CompletionCounter(threads * perThread);
        // Not freed in a finally: a failed wait leaves reads in flight, and they must not land in freed memory.
        var buffers = Enumerable.Range(0, threads).Select(_ => new NativeBuffer(4096)).ToArray();
        var submitters = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            for (int i = 0; i < perThread; i++)
            {
                var request = new BlockRequest(BlockOperation.Read, (i % 256) * 4096L, 4096, buffers[t].Buffers, counter, t * perThread + i);
                queue.Submit(Fd(file), isBlockDevice: false, request);
            }
        })).ToArray();
        foreach (var s in submitters) s.Start();
        foreach (var s in submitters) Assert.True(s.Join(Bounded));

        Assert.True(counter.Wait(Bounded), $"{counter.Remaining} completions missing");
        counter.AssertEachExactlyOnce();
        foreach (var b in buffers) b.Dispose();
    }

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void Requests_outlive_the_thread_that_submitted_them(IoBackend backend)
    {
        // io_uring ties a request to the submitting task; a request the kernel handed to that task's async workers
        // failed with EFAULT once the task ended, unless the queue's own thread is the one that submits.
        const int requests = 32, size = 256 * 1024;
        string path = _scratch.Image("outlive.img", requests * size);
        Scratch.FillRandom(path, 0, requests * size, seed: 11);
        using var queue = IoQueueFactory.Create("outlive", requests, backend);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        Assert.Equal(0, Tmds.Linux.LibC.posix_fadvise(Fd(file), 0, 0, Tmds.Linux.LibC.POSIX_FADV_DONTNEED)); // so reads must wait for the disk
        var counter = new CompletionCounter(requests);
        using var buffer = new NativeBuffer(size);

        var submitter = new Thread(() =>
        {
            for (int i = 0; i < requests; i++)
                queue.Submit(Fd(file), false, new BlockRequest(BlockOperation.Read, (long)i * size, size, buffer.Buffers, counter, i));
        });
        submitter.Start();
        Assert.True(submitter.Join(Bounded));

        Assert.True(buffer.WaitFor(counter), $"{counter.Remaining} completions missing");
        counter.AssertEachExactlyOnce();
    }

    [Fact]
    public void A_completion_that_submits_into_a_full_ring_does_not_deadlock()
    {
        string path = _scratch.Image("chain.img", 1 << 20);
        using var queue = IoQueueFactory.Create("chain", 1, IoBackend.IoUring);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        using var buffer = new NativeBuffer(4096);
        int fd = Fd(file);
        var counter = new CompletionCounter(3);
        // The first read's completion, on the completion thread, starts two more on a ring of depth one: the second
        // of them finds no free slot and must be deferred, not waited for.
        var chain = new ChainedCompletion(counter, () =>
        {
            queue.Submit(fd, false, new BlockRequest(BlockOperation.Read, 4096, 4096, buffer.Buffers, counter, 1));
            queue.Submit(fd, false, new BlockRequest(BlockOperation.Read, 8192, 4096, buffer.Buffers, counter, 2));
        });
        queue.Submit(fd, false, new BlockRequest(BlockOperation.Read, 0, 4096, buffer.Buffers, chain, 0));

        Assert.True(buffer.WaitFor(counter), $"{counter.Remaining} completions missing");
        counter.AssertEachExactlyOnce();
    }

    [Fact]
    public void Auto_picks_io_uring_where_the_kernel_allows_it()
    {
        bool available = IoUringQueue.TryCreate("probe", 1, out var probe) == 0;
        probe?.Dispose();
        using var client = new CopyClient(new CopyClientOptions { Name = "auto" });
        // Unless an admin forced the fallback for this whole test run.
        bool forced = Environment.GetEnvironmentVariable(IoQueueFactory.EnvironmentVariable) is { } v && v.Trim() == "blocking";
        Assert.Equal(available && !forced ? "io_uring" : "blocking", client.IoBackend);
    }

    [Theory]
    [InlineData(38)] // ENOSYS: no io_uring in this kernel
    [InlineData(1)]  // EPERM: kernel.io_uring_disabled, or seccomp
    [InlineData(12)] // ENOMEM: the locked-memory limit on older kernels
    public void Auto_falls_back_to_blocking_threads_when_io_uring_setup_fails(int errno)
    {
        using var queue = IoQueueFactory.Create("fallback", 4, IoBackend.Auto, environmentValue: null, Failing(errno));
        Assert.Equal("blocking", queue.Backend);
    }

    [Fact]
    public void Asking_for_io_uring_where_it_is_unavailable_fails_clearly()
    {
        var error = Assert.Throws<KcopydException>(() => IoQueueFactory.Create("strict", 4, IoBackend.IoUring, null, Failing(1)));
        Assert.Equal("IoUringUnavailable", error.ErrorId);
        Assert.Contains("io_uring_setup failed", error.Message);

        // The same through the environment variable, which names itself in the message.
        error = Assert.Throws<KcopydException>(() => IoQueueFactory.Create("strict", 4, IoBackend.Auto, "io_uring", Failing(38)));
        Assert.Contains(IoQueueFactory.EnvironmentVariable, error.Message);
    }

    [Fact]
    public void The_environment_variable_steers_Auto_and_nothing_else()
    {
        Assert.Equal(IoBackend.Auto, IoQueueFactory.Resolve(IoBackend.Auto, null));
        Assert.Equal(IoBackend.Auto, IoQueueFactory.Resolve(IoBackend.Auto, ""));
        Assert.Equal(IoBackend.Blocking, IoQueueFactory.Resolve(IoBackend.Auto, "blocking"));
        Assert.Equal(IoBackend.IoUring, IoQueueFactory.Resolve(IoBackend.Auto, " IO_URING "));
        Assert.Equal(IoBackend.IoUring, IoQueueFactory.Resolve(IoBackend.IoUring, "blocking"));
        Assert.Equal(IoBackend.Blocking, IoQueueFactory.Resolve(IoBackend.Blocking, "io_uring"));
        Assert.Equal("InvalidIoBackend", Assert.Throws<KcopydException>(() => IoQueueFactory.Resolve(IoBackend.Auto, "uringg")).ErrorId);

        using var queue = IoQueueFactory.Create("env", 4, IoBackend.Auto, "blocking", (string _, int _, out IIoQueue? q) => throw new InvalidOperationException("must not try the ring"));
        Assert.Equal("blocking", queue.Backend);
    }

    private static IoQueueFactory.TryCreateQueue Failing(int errno) => (string _, int _, out IIoQueue? queue) =>
    {
        queue = null;
        return errno;
    };

    private static int Fd(Microsoft.Win32.SafeHandles.SafeFileHandle handle) => (int)handle.DangerousGetHandle();

    private static IReadOnlyList<int> OsThreadIds(IIoQueue queue) => queue switch
    {
        IoUringQueue ring => ring.OsThreadIds,
        BlockingIoQueue blocking => blocking.OsThreadIds,
        _ => throw new InvalidOperationException($"Unknown queue {queue.GetType()}"),
    };

    /// <summary>The kernel's name of a thread of this process (at most 15 characters), or null when it has ended.</summary>
    private static string? ThreadName(int osThreadId)
    {
        try
        {
            return File.ReadAllText($"/proc/self/task/{osThreadId}/comm").TrimEnd('\n');
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            return null;
        }
    }

    /// <summary>
    /// One aligned native buffer with its iovec, for raw queue requests. A request that did not end in time may still
    /// land in it, so then Dispose leaks it: freed, the memory could go to the runtime, and a late read overwrite it.
    /// </summary>
    private sealed class NativeBuffer : IDisposable
    {
        private readonly void* _data;
        private readonly IoVec* _vector;
        private bool _abandoned;

        public NativeBuffer(int lengthBytes)
        {
            _data = NativeMemory.AlignedAlloc((nuint)lengthBytes, 4096);
            NativeMemory.Clear(_data, (nuint)lengthBytes);
            _vector = (IoVec*)NativeMemory.Alloc((nuint)sizeof(IoVec));
            _vector->Base = (nint)_data;
            _vector->Length = lengthBytes;
        }

        public Span<byte> Span => new(_data, (int)_vector->Length);

        public IoBuffers Buffers => new((nint)_vector, 1);

        /// <summary>Runs one request of <paramref name="lengthBytes"/> from the buffer's start straight on a queue; returns its error.</summary>
        public int Run(IIoQueue queue, int fd, BlockOperation operation, long offsetBytes, long lengthBytes)
            => Run(operation, offsetBytes, lengthBytes, request => queue.Submit(fd, false, request));

        /// <summary>Runs one request through a device (its range checks included) on the given queue.</summary>
        public int Run(IBlockDevice device, IIoQueue queue, BlockOperation operation, long offsetBytes, long lengthBytes)
            => Run(operation, offsetBytes, lengthBytes, request => device.Submit(request, queue));

        private int Run(BlockOperation operation, long offsetBytes, long lengthBytes, Action<BlockRequest> submit)
        {
            var single = new IoVec { Base = (nint)_data, Length = (nint)lengthBytes };
            var counter = new CompletionCounter(1);
            bool hasData = operation is BlockOperation.Read or BlockOperation.Write;
            submit(new BlockRequest(operation, offsetBytes, lengthBytes, hasData ? new IoBuffers((nint)(&single), 1) : IoBuffers.None, counter, 0));
            Assert.True(WaitFor(counter), "the request never completed");
            return counter.ErrorOf(0);
        }

        /// <summary>Waits for the requests into this buffer; when they do not all end in time, the buffer is never freed.</summary>
        public bool WaitFor(CompletionCounter counter)
        {
            bool ended = counter.Wait(Bounded);
            _abandoned |= !ended;
            return ended;
        }

        public void Dispose()
        {
            if (_abandoned) return;
            NativeMemory.Free(_vector);
            NativeMemory.AlignedFree(_data);
        }
    }

    /// <summary>Counts completions by tag, so a request completed twice or never shows.</summary>
    private sealed class CompletionCounter(int expected) : IBlockCompletion
    {
        private readonly int[] _calls = new int[expected];
        private readonly int[] _errors = new int[expected];
        private readonly CountdownEvent _done = new(expected);

        public int Remaining => _done.CurrentCount;

        public void Completed(int tag, int error)
        {
            _errors[tag] = error;
            if (Interlocked.Increment(ref _calls[tag]) == 1) _done.Signal();
        }

        public bool Wait(TimeSpan timeout) => _done.Wait(timeout);

        public int ErrorOf(int tag) => Volatile.Read(ref _errors[tag]);

        public void AssertEachExactlyOnce()
        {
            for (int i = 0; i < _calls.Length; i++) Assert.True(Volatile.Read(ref _calls[i]) == 1, $"request {i} completed {_calls[i]} times");
            for (int i = 0; i < _errors.Length; i++) Assert.Equal(0, _errors[i]);
        }
    }

    private sealed class ChainedCompletion(CompletionCounter counter, Action next) : IBlockCompletion
    {
        public void Completed(int tag, int error)
        {
            next();
            counter.Completed(tag, error);
        }
    }
}
