using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Tests;

/// <summary>What the bandwidth throttle holds back, and what it must not.</summary>
public sealed class ThrottleTests : IDisposable
{
    private const int MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan Promptly = TimeSpan.FromSeconds(5);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_chunk_that_was_read_is_written_without_waiting_for_the_next_chunks_throttle_slot()
    {
        string sourcePath = _scratch.Loop("src.img", 16 * MiB);
        Scratch.FillRandom(sourcePath, 0, 2 * MiB, seed: 41);
        var source = _scratch.Track(LinuxBlockDevice.Open(sourcePath, DeviceOpenOptions.ReadOnly));
        string targetPath = _scratch.Loop("dst.img", 16 * MiB);
        var target = _scratch.Track(LinuxBlockDevice.Open(targetPath, DeviceOpenOptions.ReadWrite));
        var client = _scratch.Track(new CopyClient(new CopyClientOptions { Name = "slow" }));
        // The first 2 MiB chunk starts at once; the next one's slot is 32 s later. Only reads wait for slots.
        client.Throttle.BytesPerSecond = 64 * 1024;
        var job = client.Copy(new CopyRequest { Source = source, Destinations = [new CopyDestination(target, 0)], LengthBytes = 16 * MiB });
        try
        {
            Wait.Until(() => job.BytesCopied == 2 * MiB, Promptly, "the first chunk reaches the target before the second one's slot");
            Scratch.AssertSameBytes(sourcePath, 0, targetPath, 0, 2 * MiB);
        }
        finally
        {
            job.Stop();
            Assert.True(job.Wait(Bounded), "The stopped job never ended.");
        }
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(64L * MiB)]
    public void Lifting_or_raising_the_limit_starts_the_chunks_waiting_for_it_at_once(long newBytesPerSecond)
    {
        var source = _scratch.Track(LinuxBlockDevice.Open(_scratch.Loop("src.img", 16 * MiB), DeviceOpenOptions.ReadOnly));
        var target = _scratch.Track(LinuxBlockDevice.Open(_scratch.Loop("dst.img", 16 * MiB), DeviceOpenOptions.ReadWrite));
        var client = _scratch.Track(new CopyClient(new CopyClientOptions { Name = "raised" }));
        client.Throttle.BytesPerSecond = 64 * 1024;
        var job = client.Copy(new CopyRequest { Source = source, Destinations = [new CopyDestination(target, 0)], LengthBytes = 16 * MiB });
        try
        {
            Wait.Until(() => job.BytesCopied == 2 * MiB, Promptly, "the first chunk is copied and the second waits 32 s for its slot");

            // The slot was reckoned at the old rate: the new one applies from the next chunk on.
            client.Throttle.BytesPerSecond = newBytesPerSecond;

            Assert.True(job.Wait(Promptly), $"The job was still {job.State} at {job.BytesCopied} bytes {Promptly} after the limit changed.");
            Assert.Equal(CopyJobState.Completed, job.State);
        }
        finally
        {
            job.Stop();
            Assert.True(job.Wait(Bounded), "The stopped job never ended.");
        }
    }

    [Fact]
    public void A_job_over_its_own_rate_waits_alone_and_holds_no_pages_while_the_clients_other_jobs_run_at_full_speed()
    {
        string sourcePath = _scratch.Loop("src.img", 32 * MiB);
        Scratch.FillRandom(sourcePath, 0, 32 * MiB, seed: 43);
        var source = _scratch.Track(LinuxBlockDevice.Open(sourcePath, DeviceOpenOptions.ReadOnly));
        string slowPath = _scratch.Loop("slow.img", 16 * MiB), fastPath = _scratch.Loop("fast.img", 16 * MiB);
        var slowTarget = _scratch.Track(LinuxBlockDevice.Open(slowPath, DeviceOpenOptions.ReadWrite));
        var fastTarget = _scratch.Track(LinuxBlockDevice.Open(fastPath, DeviceOpenOptions.ReadWrite));
        var client = _scratch.Track(new CopyClient(new CopyClientOptions { Name = "shared" }));
        // 2 MiB chunks at 1 MiB/s: each of its chunks after the first waits about 2 s for its slot.
        var slow = client.Copy(new CopyRequest
        {
            Source = source, Destinations = [new CopyDestination(slowTarget, 0)], LengthBytes = 16 * MiB, MaxBytesPerSecond = MiB,
        });
        try
        {
            Wait.Until(() => slow.BytesCopied >= 2 * MiB, Promptly, "the limited job copies its first chunk at once");
            var fast = client.Copy(new CopyRequest { Source = source, SourceOffsetBytes = 16 * MiB, Destinations = [new CopyDestination(fastTarget, 0)], LengthBytes = 16 * MiB });
            Assert.True(fast.Wait(Promptly), $"The unlimited job behind the limited one was still {fast.State} at {fast.BytesCopied} bytes.");
            Assert.Equal(CopyJobState.Completed, fast.State);
            Scratch.AssertSameBytes(sourcePath, 16 * MiB, fastPath, 0, 16 * MiB);
            Assert.True(slow.State == CopyJobState.Running && slow.BytesCopied < 12 * MiB,
                $"The limited job ran past its rate: {slow.State} at {slow.BytesCopied} bytes.");
            // Waiting for its slot, it holds no pages.
            Wait.Until(() => client.FreePages == client.PageCount, Promptly, "the limited job holds no pages while it waits for its slot");
        }
        finally
        {
            slow.Stop();
            Assert.True(slow.Wait(Bounded), "The stopped job never ended.");
        }
    }

    [Fact]
    public void A_job_with_its_own_rate_takes_as_long_as_that_rate_says()
    {
        string sourcePath = _scratch.Loop("src.img", 8 * MiB);
        Scratch.FillRandom(sourcePath, 0, 8 * MiB, seed: 44);
        var source = _scratch.Track(LinuxBlockDevice.Open(sourcePath, DeviceOpenOptions.ReadOnly));
        string targetPath = _scratch.Loop("dst.img", 8 * MiB);
        var target = _scratch.Track(LinuxBlockDevice.Open(targetPath, DeviceOpenOptions.ReadWrite));
        var client = _scratch.Track(new CopyClient(new CopyClientOptions { Name = "paced" }));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // 4 chunks of 2 MiB at 4 MiB/s: the first starts at once, the last 1.5 s later.
        var job = client.Copy(new CopyRequest { Source = source, Destinations = [new CopyDestination(target, 0)], LengthBytes = 8 * MiB, MaxBytesPerSecond = 4 * MiB });
        Assert.True(job.Wait(Bounded), "The job never ended.");
        Assert.Equal(CopyJobState.Completed, job.State);
        Assert.InRange(clock.Elapsed.TotalSeconds, 1.4, 10);
        Scratch.AssertSameBytes(sourcePath, 0, targetPath, 0, 8 * MiB);
    }
}
