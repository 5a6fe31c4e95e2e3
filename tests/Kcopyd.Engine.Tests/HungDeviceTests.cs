using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// Devices that stop answering: a held device (GatedDevice) and a real disk that hangs (nbdkit's pause filter behind
/// nbdfuse and a loop device). Stopping never waits on them, nothing their I/O may still use is freed, and a mirror
/// fails a leg that hangs past its leg timeout and goes on degraded.
/// </summary>
public sealed class HungDeviceTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();
    private readonly List<IDisposable> _owned = [];

    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        _scratch.Dispose();
    }

    [Fact]
    public void A_stopped_job_whose_writes_hang_is_Stopping_and_keeps_its_pages_until_they_return()
    {
        using var source = LinuxBlockDevice.Open(_scratch.Image("src.img", 4 * MiB), DeviceOpenOptions.ReadOnly);
        using var target = new GatedDevice(LinuxBlockDevice.Open(_scratch.Image("dst.img", 4 * MiB), DeviceOpenOptions.ReadWrite), BlockOperation.Write);
        using var client = new CopyClient(new CopyClientOptions { PageCount = 16, SubJobSizeBytes = 256 * 1024, SubJobsInFlight = 2 });
        var job = client.Copy(new CopyRequest { Source = source, Destinations = [new CopyDestination(target, 0)], LengthBytes = 4 * MiB });
        Wait.Until(() => target.Held == 2, Bounded, "both chunks write the target");

        job.Stop();
        Assert.Equal(CopyJobState.Stopping, job.State); // at once: Stop never waits for the device
        Assert.False(job.Wait(TimeSpan.FromMilliseconds(300)));
        Assert.Equal(CopyJobState.Stopping, job.State);
        Assert.Equal(2, job.IoInFlight);
        Assert.Equal(16 - 8, client.FreePages); // the held writes' pages stay theirs

        target.Open();
        Assert.True(job.Wait(Bounded), "The stopped job never ended once its writes returned.");
        Assert.Equal(CopyJobState.Stopped, job.State);
        Assert.Equal(0, job.IoInFlight);
        Assert.Equal(client.PageCount, client.FreePages);
        Assert.Equal(512 * 1024, job.BytesCopied);
    }

    [Fact]
    public void A_leg_that_hangs_past_the_leg_timeout_is_failed_as_Hung_and_writes_are_acknowledged_from_the_other()
    {
        var paused = Own(FaultyDisk.Pausable(_scratch.Folder, 16 * MiB));
        string good = _scratch.Loop("good.img", 16 * MiB);
        var mirror = Own(new MirrorDevice(
            [Own(LinuxBlockDevice.Open(good, DeviceOpenOptions.ReadWrite)), Own(LinuxBlockDevice.Open(paused.Device, DeviceOpenOptions.ReadWrite))],
            new MirrorOptions { NoSync = true, LegTimeout = TimeSpan.FromSeconds(1) }));
        var data = new byte[256 * 1024];
        new Random(7).NextBytes(data);

        paused.Pause();
        int errno;
        try
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            errno = PendingIo.WriteAndWait(mirror, 2 * MiB, data, TimeSpan.FromSeconds(20));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"The write took {clock.Elapsed} with a 1 s leg timeout.");
            var status = mirror.GetStatus();
            Assert.Equal(MirrorState.Degraded, status.State);
            Assert.Equal(LegHealth.Hung, status.Legs[1].Health);
            Assert.True(status.Legs[1].IoInFlight >= 1, "the write is still in the kernel");
            Assert.Contains(status.Warnings, w => w.Contains("is hung"));
            Assert.Equal(RegionState.NoSync, mirror.StateOfRegion(2 * MiB / mirror.RegionSizeBytes)); // the hung leg lacks it
            // A hung leg is not re-added while its I/O is out: a probe would only hang too.
            Assert.Contains(mirror.ReAddDeadLegs(), r => r.Error != null && r.Error.Contains("hung"));
            // Nothing more goes to it: a second write is acknowledged at once.
            clock.Restart();
            Assert.Equal(0, PendingIo.WriteAndWait(mirror, 4 * MiB, data, TimeSpan.FromSeconds(5)));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"A write to a mirror whose leg is known hung took {clock.Elapsed}.");
        }
        finally
        {
            paused.Resume();
        }
        Assert.Equal(0, errno);
        Assert.Equal(data, Scratch.Read(good, 2 * MiB, data.Length));
        Wait.Until(() => mirror.Legs[1].Health == LegHealth.Dead, Bounded, "the hung leg to answer and be dead");
        Assert.Equal(0, mirror.Legs[1].IoInFlight);
        Assert.True(mirror.Legs[1].LateAnswers >= 1);

        // Repair brings it back: the regions it missed are copied, and the mirror is in sync again.
        Assert.All(mirror.ReAddDeadLegs(), r => Assert.Null(r.Error));
        Assert.True(mirror.WaitForSync(Bounded), "The re-added leg was never resynced.");
        Assert.Equal(data, Scratch.Read(paused.Device, 2 * MiB, data.Length));
        Assert.Equal(data, Scratch.Read(paused.Device, 4 * MiB, data.Length));
    }

    [Fact]
    public void A_leg_timeout_of_zero_waits_for_the_leg_and_can_be_set_while_it_hangs()
    {
        var paused = Own(FaultyDisk.Pausable(_scratch.Folder, 16 * MiB));
        string good = _scratch.Loop("good.img", 16 * MiB);
        var mirror = Own(new MirrorDevice(
            [Own(LinuxBlockDevice.Open(good, DeviceOpenOptions.ReadWrite)), Own(LinuxBlockDevice.Open(paused.Device, DeviceOpenOptions.ReadWrite))],
            new MirrorOptions { NoSync = true, LegTimeout = TimeSpan.Zero }));
        paused.Pause();
        try
        {
            using var write = PendingIo.Write(mirror, 1 * MiB, new byte[64 * 1024]);
            Thread.Sleep(2000);
            Assert.False(write.IsCompleted, "A write ended with no leg timeout while a leg hung.");
            Assert.Equal(LegHealth.Alive, mirror.Legs[1].Health);
            mirror.LegTimeout = TimeSpan.FromSeconds(1);
            Assert.Equal(0, write.Wait(TimeSpan.FromSeconds(10))); // acknowledged from the other leg
            Assert.Equal(LegHealth.Hung, mirror.Legs[1].Health);
        }
        finally
        {
            paused.Resume();
        }
    }

    private T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }
}
