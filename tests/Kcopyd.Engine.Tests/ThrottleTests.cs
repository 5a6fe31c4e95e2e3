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
}
