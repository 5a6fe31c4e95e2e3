using System.Diagnostics;
using System.Runtime.InteropServices;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// A device disposed while its requests are in flight keeps its fd until the last one completes, so the number
/// cannot go to another file while a queue or the kernel still holds a request for it.
/// </summary>
public sealed unsafe class DisposeInFlightTests : IDisposable
{
    private const int MiB = 1 << 20;
    private const int ReadBytes = 64 * 1024;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(30);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void A_read_in_flight_at_dispose_completes_with_the_devices_bytes_and_the_fd_closes_after_it(IoBackend backend)
    {
        using var disk = FaultyDisk.WithSlowReads(_scratch.Folder, 4 * MiB, readDelay: "500ms");
        var expected = FillWithSeed(disk.Device, seed: 21);
        using var queue = IoQueueFactory.Create("dispose-in-flight", 4, backend);
        var device = LinuxBlockDevice.Open(disk.Device, DeviceOpenOptions.ReadOnly);
        int fd = Assert.Single(FdsOf(disk.Device));
        using var read = new PendingRead();

        device.Submit(read.At(0), queue);
        device.Dispose();

        Assert.False(read.IsDone, "the read ended before Dispose: the slow disk did not hold it");
        Assert.Equal(new[] { fd }, FdsOf(disk.Device));
        Assert.Throws<ObjectDisposedException>(() => device.Submit(read.At(0), queue));
        Assert.True(read.Wait(), "the read in flight never completed");
        Assert.Equal(0, read.Error);
        Assert.Equal(expected[..ReadBytes], read.Bytes);
        Assert.True(WaitUntil(() => FdsOf(disk.Device).Length == 0), "the fd stayed open after the last request completed");
    }

    [Fact]
    public void A_read_still_queued_at_dispose_reads_its_own_device_and_not_a_file_opened_since()
    {
        using var disk = FaultyDisk.WithSlowReads(_scratch.Folder, 4 * MiB, readDelay: "500ms");
        var expected = FillWithSeed(disk.Device, seed: 22);
        string other = _scratch.Image("other.img", ReadBytes * 2);
        File.WriteAllBytes(other, Enumerable.Repeat((byte)0x5A, ReadBytes * 2).ToArray());
        // One thread: the second read waits in the queue, fd number and all, while the first one is slow.
        using var queue = IoQueueFactory.Create("queued-at-dispose", 1, IoBackend.Blocking);
        var device = LinuxBlockDevice.Open(disk.Device, DeviceOpenOptions.ReadOnly);
        int fd = Assert.Single(FdsOf(disk.Device));
        using var first = new PendingRead();
        using var queued = new PendingRead();

        device.Submit(first.At(0), queue);
        device.Submit(queued.At(ReadBytes), queue);
        device.Dispose();
        using var opened = File.OpenHandle(other);

        Assert.True(first.Wait() && queued.Wait(), "the reads never completed");
        Assert.Equal(0, queued.Error);
        Assert.Equal(expected[ReadBytes..(2 * ReadBytes)], queued.Bytes);
        Assert.NotEqual(fd, (int)opened.DangerousGetHandle());
        Assert.True(WaitUntil(() => FdsOf(disk.Device).Length == 0), "the fd stayed open after the last request completed");
    }

    [Fact]
    public void A_device_with_nothing_in_flight_closes_its_fd_at_dispose()
    {
        string image = _scratch.Image("idle.img", MiB);
        var device = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadOnly);
        Assert.Single(FdsOf(image));

        device.Dispose();

        Assert.Empty(FdsOf(image));
    }

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void Dispose_racing_busy_submitters_completes_every_accepted_request_once_and_then_closes_the_fd(IoBackend backend)
    {
        string image = _scratch.Image("busy.img", MiB);
        using var queue = IoQueueFactory.Create("dispose-race", 16, backend);
        var device = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadOnly);
        // Not `using`: with a completion of ours it cannot wait for the reads itself. Freed once they all ended; a
        // failed wait leaves it to the reads still queued, which would otherwise land in freed memory.
        var read = new PendingRead();
        var counter = new CountingCompletion();
        var request = read.At(0, counter);
        long accepted = 0;
        using var started = new CountdownEvent(4);
        var submitters = Enumerable.Range(0, 4).Select(_ => new Thread(() =>
        {
            started.Signal();
            try
            {
                // Every thread reads into the same buffer: only the counting matters here, not the bytes.
                while (true)
                {
                    device.Submit(request, queue);
                    Interlocked.Increment(ref accepted);
                }
            }
            catch (ObjectDisposedException)
            {
                // Dispose won the race for this thread: the request it was submitting was refused, not lost.
            }
        })).ToArray();
        foreach (var thread in submitters) thread.Start();
        Assert.True(started.Wait(Bounded));
        Thread.Sleep(50);

        device.Dispose();

        foreach (var thread in submitters) Assert.True(thread.Join(Bounded), "a submitter never saw the device disposed");
        Assert.True(WaitUntil(() => Interlocked.Read(ref counter.Count) == Interlocked.Read(ref accepted)),
            $"{Interlocked.Read(ref accepted)} requests accepted, {Interlocked.Read(ref counter.Count)} completed");
        Assert.True(accepted > 0);
        Assert.Equal(0, Interlocked.Read(ref counter.Errors));
        Assert.True(WaitUntil(() => FdsOf(image).Length == 0), "the fd stayed open after the last request completed");
        read.Dispose();
    }

    /// <summary>Fills the first MiB with seeded random bytes and returns them (FillRandom's first 1 MiB chunk).</summary>
    private static byte[] FillWithSeed(string device, int seed)
    {
        Scratch.FillRandom(device, 0, MiB, seed);
        var bytes = new byte[MiB];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>This process's fds that are open on <paramref name="path"/>, from the /proc/self/fd links.</summary>
    private static int[] FdsOf(string path)
    {
        var fds = new List<int>();
        foreach (string link in Directory.GetFiles("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(link).LinkTarget == path) fds.Add(int.Parse(Path.GetFileName(link)));
            }
            catch (IOException)
            {
                // closed while we looked (the fd of the directory listing itself, say)
            }
        }
        return fds.ToArray();
    }

    private static bool WaitUntil(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > Bounded) return false;
            Thread.Sleep(10);
        }
        return true;
    }

    private sealed class CountingCompletion : IBlockCompletion
    {
        public long Count;
        public long Errors;

        // No asserting here: this runs on the queue's thread, where an exception would take the process down.
        public void Completed(int tag, int error)
        {
            if (error != 0) Interlocked.Increment(ref Errors);
            Interlocked.Increment(ref Count);
        }
    }

    /// <summary>A read's native buffer and its completion; disposing waits for the read before freeing the buffer.</summary>
    private sealed class PendingRead : IBlockCompletion, IDisposable
    {
        private readonly void* _buffer = NativeMemory.AlignedAlloc(ReadBytes, 4096);
        private readonly IoVec* _vector = (IoVec*)NativeMemory.Alloc((nuint)sizeof(IoVec));
        private readonly ManualResetEventSlim _done = new();
        private bool _submitted;

        public PendingRead()
        {
            _vector->Base = (nint)_buffer;
            _vector->Length = ReadBytes;
        }

        public bool IsDone => _done.IsSet;

        public int Error { get; private set; }

        public byte[] Bytes => new ReadOnlySpan<byte>(_buffer, ReadBytes).ToArray();

        /// <summary>A read into this buffer; with a completion of the caller's, the caller waits for it before disposing.</summary>
        public BlockRequest At(long offsetBytes, IBlockCompletion? completion = null)
        {
            _submitted |= completion == null;
            return new BlockRequest(BlockOperation.Read, offsetBytes, ReadBytes, new IoBuffers((nint)_vector, 1), completion ?? this, 0);
        }

        public bool Wait() => _done.Wait(Bounded);

        public void Completed(int tag, int error)
        {
            Error = error;
            _done.Set();
        }

        public void Dispose()
        {
            // Memory a read may still land in is leaked rather than freed, if a test failed with the read in flight.
            if (_submitted && !Wait()) return;
            NativeMemory.Free(_vector);
            NativeMemory.AlignedFree(_buffer);
        }
    }
}
