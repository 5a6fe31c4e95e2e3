using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Tests;

public sealed class CopyJobStopTests : IDisposable
{
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan Promptly = TimeSpan.FromSeconds(2);
    private const int MiB = 1 << 20;
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Stopping_a_job_whose_chunks_wait_for_pages_ends_it()
    {
        using var source = LinuxBlockDevice.Open(_scratch.Image("src.img", 4 << 20), DeviceOpenOptions.ReadOnly);
        using var target = new GatedDevice(LinuxBlockDevice.Open(_scratch.Image("dst.img", 4 << 20), DeviceOpenOptions.ReadWrite), BlockOperation.Write);
        // Two pages: the first chunk takes both, the other three wait in pages_jobs.
        using var client = new CopyClient(new CopyClientOptions { PageCount = 2, SubJobSizeBytes = 128 * 1024, SubJobsInFlight = 4 });
        var job = client.Copy(new CopyRequest { Source = source, Destinations = [new CopyDestination(target, 0)], LengthBytes = 4 << 20 });
        Wait.Until(() => target.Held == 1, Bounded, "the first chunk writes the target");

        job.Stop();
        // The first chunk ends; in that same pass the waiting ones are skipped onto the complete list, which the
        // pass has already run: nothing else will wake the worker.
        target.Open();

        Assert.True(job.Wait(Bounded), "The stopped job never ended.");
        Assert.Equal(CopyJobState.Stopped, job.State);
        Assert.Equal(128 * 1024, job.BytesCopied);
    }

    [Fact]
    public void Stopping_a_throttled_job_ends_its_chunks_waiting_for_the_throttle_at_once()
    {
        var source = _scratch.Track(LinuxBlockDevice.Open(_scratch.Loop("src.img", 16 * MiB), DeviceOpenOptions.ReadOnly));
        var target = _scratch.Track(LinuxBlockDevice.Open(_scratch.Loop("dst.img", 16 * MiB), DeviceOpenOptions.ReadWrite));
        var client = _scratch.Track(new CopyClient(new CopyClientOptions { Name = "throttled" }));
        // The first 2 MiB chunk starts at once; at 64 KiB/s each of the next three waits 32 s more than the one before.
        client.Throttle.BytesPerSecond = 64 * 1024;
        var job = client.Copy(new CopyRequest { Source = source, Destinations = [new CopyDestination(target, 0)], LengthBytes = 16 * MiB });
        Wait.Until(() => job.State == CopyJobState.Running, Bounded, "the job runs");

        job.Stop();

        Assert.True(job.Wait(Promptly), $"The stopped job was still {job.State} after {Promptly}.");
        Assert.Equal(CopyJobState.Stopped, job.State);
        Assert.True(job.BytesCopied <= 2 * MiB, $"{job.BytesCopied} bytes were copied: a chunk waiting for the throttle started after Stop.");
        var disposer = new Thread(client.Dispose);
        disposer.Start();
        Assert.True(disposer.Join(Promptly), "The client did not dispose promptly after its job stopped.");
        job.Stop(); // a job of a disposed client: nothing to wake, nothing to throw
    }

    [Fact]
    public void Stopping_a_job_whose_chunks_wait_behind_another_jobs_chunk_ends_it_at_once()
    {
        var source = _scratch.Track(LinuxBlockDevice.Open(_scratch.Image("src.img", 4 * MiB), DeviceOpenOptions.ReadOnly));
        var held = _scratch.Track(new GatedDevice(LinuxBlockDevice.Open(_scratch.Image("held.img", 4 * MiB), DeviceOpenOptions.ReadWrite), BlockOperation.Write));
        var other = _scratch.Track(LinuxBlockDevice.Open(_scratch.Image("other.img", 4 * MiB), DeviceOpenOptions.ReadWrite));
        // Two pages: A's first chunk takes both and its write is held; A's other chunks wait for pages, B's behind them.
        var client = _scratch.Track(new CopyClient(new CopyClientOptions { PageCount = 2, SubJobSizeBytes = 128 * 1024, SubJobsInFlight = 4 }));
        var a = client.Copy(new CopyRequest { Source = source, Destinations = [new CopyDestination(held, 0)], LengthBytes = 4 * MiB });
        Wait.Until(() => held.Held == 1, Bounded, "A's first chunk writes");
        try
        {
            var b = client.Copy(new CopyRequest { Source = source, Destinations = [new CopyDestination(other, 0)], LengthBytes = 4 * MiB });

            b.Stop();

            Assert.True(b.Wait(Promptly), $"B was still {b.State} after {Promptly}: its chunks waited for A's pages.");
            Assert.Equal(CopyJobState.Stopped, b.State);
            Assert.Equal(0, b.BytesCopied);
            Assert.Equal(CopyJobState.Running, a.State);
        }
        finally
        {
            held.Open(); // else the client's Dispose waits for A for ever
        }
        Assert.True(a.Wait(Bounded), "A never ended.");
        Assert.Equal(CopyJobState.Completed, a.State);
    }
}
