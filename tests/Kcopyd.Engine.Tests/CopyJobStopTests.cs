using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Tests;

public sealed class CopyJobStopTests : IDisposable
{
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
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
}
