using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Tests;

/// <summary>Leg failures on real faulty block devices: nbdkit's error filter behind nbdfuse and a loop device (FAULTS.md).</summary>
public sealed class MirrorFaultTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_failed_write_kills_its_leg_and_is_acknowledged_from_the_live_one()
    {
        var faulty = Track(new FaultyDisk(_scratch.Folder, 16 * MiB));
        string good = _scratch.Loop("good.img", 16 * MiB);
        var bad = Track(LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadWrite));
        // The faulty leg is the default one, so its death also hands the default to the live leg.
        var mirror = Track(new MirrorDevice([bad, Track(LinuxBlockDevice.Open(good, DeviceOpenOptions.ReadWrite))], new MirrorOptions { NoSync = true }));
        var before = new byte[64 * 1024];
        new Random(91).NextBytes(before);
        Assert.Equal(0, PendingIo.WriteAndWait(mirror, 1 * MiB, before, Bounded));
        Assert.Equal(MirrorState.InSync, mirror.GetStatus().State);

        faulty.FailWrites(true);
        var data = new byte[128 * 1024];
        new Random(92).NextBytes(data);
        Assert.Equal(0, PendingIo.WriteAndWait(mirror, 3 * MiB, data, Bounded));

        var status = mirror.GetStatus();
        Assert.Equal(MirrorState.Degraded, status.State);
        Assert.Equal(LegHealth.Dead, status.Legs[0].Health);
        Assert.True(status.Legs[0].WriteErrors >= 1);
        Assert.Equal(LegHealth.Alive, status.Legs[1].Health);
        Assert.True(status.Legs[1].IsDefault);
        Assert.Equal(RegionState.NoSync, mirror.StateOfRegion(3 * MiB / mirror.RegionSizeBytes)); // to resync when replaced
        Assert.Equal(data, Scratch.Read(good, 3 * MiB, data.Length));
        Assert.Equal(data, PendingIo.ReadAndWait(mirror, 3 * MiB, data.Length, Bounded));
        Assert.Equal(before, PendingIo.ReadAndWait(mirror, 1 * MiB, before.Length, Bounded));
        Assert.False(mirror.WaitForSync(TimeSpan.Zero));
    }

    [Fact]
    public void A_read_that_fails_on_one_leg_is_retried_on_the_other()
    {
        var faulty = Track(new FaultyDisk(_scratch.Folder, 16 * MiB));
        string good = _scratch.Loop("good.img", 16 * MiB);
        var mirror = Track(new MirrorDevice(
            [Track(LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadWrite)), Track(LinuxBlockDevice.Open(good, DeviceOpenOptions.ReadWrite))],
            new MirrorOptions { NoSync = true }));
        Assert.True(mirror.WaitForSync(Bounded));

        faulty.FailReads(true);
        // Regions never touched before, so no page cache under the loop device can answer for the faulty disk.
        for (long offset = 8 * MiB; offset < 12 * MiB; offset += 512 * 1024)
            Assert.Equal(new byte[64 * 1024], PendingIo.ReadAndWait(mirror, offset, 64 * 1024, Bounded));

        var status = mirror.GetStatus();
        Assert.True(status.Legs[0].ReadErrors >= 1, "No read went to the faulty leg.");
        Assert.Equal(MirrorState.InSync, status.State); // a read error alone does not kill a leg
    }

    [Fact]
    public void A_copy_that_degrades_its_destination_mirror_completes_with_a_warning_saying_so()
    {
        var faulty = Track(new FaultyDisk(_scratch.Folder, 16 * MiB));
        string good = _scratch.Loop("good.img", 16 * MiB), source = _scratch.Loop("source.img", 16 * MiB);
        var mirror = Track(new MirrorDevice(
            [Track(LinuxBlockDevice.Open(good, DeviceOpenOptions.ReadWrite)), Track(LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadWrite))],
            new MirrorOptions { NoSync = true }));
        using var client = new Kcopyd.Engine.Copy.CopyClient(new Kcopyd.Engine.Copy.CopyClientOptions { Name = "degrading" });
        var request = new Kcopyd.Engine.Copy.CopyRequest
        {
            Source = Track(LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly)),
            Destinations = [new Kcopyd.Engine.Copy.CopyDestination(mirror, 0)],
            LengthBytes = 4 * MiB,
        };
        var clean = client.Copy(request);
        Assert.True(clean.Wait(Bounded));
        Assert.Empty(clean.Warnings);

        faulty.FailWrites(true);
        var degrading = client.Copy(request);
        Assert.True(degrading.Wait(Bounded));
        Assert.Equal(Kcopyd.Engine.Copy.CopyJobState.Completed, degrading.State);
        Assert.Contains(degrading.Warnings, w => w.Contains(faulty.Device) && w.Contains("is dead"));
    }

    private T Track<T>(T disposable) where T : IDisposable => _scratch.Track(disposable);
}
