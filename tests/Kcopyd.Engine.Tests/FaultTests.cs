using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Tests;

public sealed class FaultTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_failed_write_sets_that_destinations_bit_and_stops_the_job()
    {
        using var faulty = new FaultyDisk(_scratch.Folder, 16 * MiB);
        string source = _scratch.Loop("src.img", 16 * MiB);
        string good = _scratch.Loop("good.img", 16 * MiB);
        Scratch.FillRandom(source, 0, 16 * MiB, seed: 5);
        faulty.FailWrites(true);

        using var client = new CopyClient(new CopyClientOptions { Name = "fault-write" });
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var ok = LinuxBlockDevice.Open(good, DeviceOpenOptions.ReadWrite);
        using var bad = LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadWrite);
        var job = client.Copy(new CopyRequest
        {
            Source = from, LengthBytes = 16 * MiB,
            Destinations = [new CopyDestination(ok, 0), new CopyDestination(bad, 0)],
        });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Failed, job.State);
        Assert.False(job.ReadError);
        Assert.Equal(0b10UL, job.WriteErrorMask);
        Assert.Equal([faulty.Device], job.WriteErrors);
        Assert.True(job.BytesCopied < 16 * MiB);
        Assert.Contains($"Writing '{faulty.Device}' failed: Input/output error (EIO).", job.Error);
        Assert.Equal("EIO", job.ErrnoName);
        Assert.Equal(client.PageCount, client.FreePages);
    }

    [Fact]
    public void With_IgnoreErrors_a_failed_destination_does_not_stop_the_others()
    {
        using var faulty = new FaultyDisk(_scratch.Folder, 16 * MiB);
        string source = _scratch.Loop("src.img", 16 * MiB);
        string good = _scratch.Loop("good.img", 16 * MiB);
        Scratch.FillRandom(source, 0, 16 * MiB, seed: 6);
        faulty.FailWrites(true);

        using var client = new CopyClient(new CopyClientOptions { Name = "fault-ignore" });
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var ok = LinuxBlockDevice.Open(good, DeviceOpenOptions.ReadWrite);
        using var bad = LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadWrite);
        var job = client.Copy(new CopyRequest
        {
            Source = from, LengthBytes = 16 * MiB, IgnoreErrors = true,
            Destinations = [new CopyDestination(bad, 0), new CopyDestination(ok, 0)],
        });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Failed, job.State);
        Assert.Equal(0b01UL, job.WriteErrorMask);
        Assert.Equal(0, job.BytesCopied); // every chunk failed on one destination
        Scratch.AssertSameBytes(source, 0, good, 0, 16 * MiB); // ...and still reached the other
        Assert.Contains("Errors were ignored", job.Error);
    }

    [Fact]
    public void A_failed_read_sets_the_read_error_and_writes_nothing_it_did_not_read()
    {
        using var faulty = new FaultyDisk(_scratch.Folder, 16 * MiB);
        string target = _scratch.Loop("dst.img", 16 * MiB);
        Scratch.FillRandom(target, 0, 16 * MiB, seed: 7);
        string before = Scratch.Sha256(target, 0, 16 * MiB);
        faulty.FailReads(true);

        using var client = new CopyClient(new CopyClientOptions { Name = "fault-read" });
        using var from = LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var job = client.Copy(new CopyRequest
        {
            Source = from, LengthBytes = 16 * MiB, IgnoreErrors = true,
            Destinations = [new CopyDestination(to, 0)],
        });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Failed, job.State);
        Assert.True(job.ReadError);
        Assert.Equal("EIO", job.ErrnoName);
        Assert.Equal(0UL, job.WriteErrorMask);
        Assert.Equal(before, Scratch.Sha256(target, 0, 16 * MiB));
    }

    [Fact]
    public void With_IgnoreErrors_a_copy_goes_past_bad_sectors_and_copies_the_rest()
    {
        string image = _scratch.Image("src.img", 16 * MiB);
        Scratch.FillRandom(image, 0, 16 * MiB, seed: 8);
        string target = _scratch.Loop("dst.img", 16 * MiB);
        // One bad 4 KiB sector in the third 1 MiB chunk.
        using var faulty = FaultyDisk.WithBadSectors(_scratch.Folder, image, (2 * MiB + 8192, 4096));

        using var client = new CopyClient(new CopyClientOptions { Name = "fault-partial", SubJobSizeBytes = (int)MiB });
        using var from = LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var job = client.Copy(new CopyRequest
        {
            Source = from, LengthBytes = 16 * MiB, IgnoreErrors = true,
            Destinations = [new CopyDestination(to, 0)],
        });

        Assert.True(job.Wait(Bounded));
        Assert.True(job.ReadError);
        Assert.Equal(15 * MiB, job.BytesCopied); // all but the chunk holding the bad sector
        Scratch.AssertSameBytes(image, 0, target, 0, 2 * MiB);
        Assert.Equal(new byte[MiB], Scratch.Read(target, 2 * MiB, MiB)); // the unreadable chunk was not written
        Scratch.AssertSameBytes(image, 3 * MiB, target, 3 * MiB, 13 * MiB);
    }

    [Fact]
    public void Without_IgnoreErrors_a_bad_sector_stops_the_copy()
    {
        string image = _scratch.Image("src.img", 16 * MiB);
        Scratch.FillRandom(image, 0, 16 * MiB, seed: 9);
        string target = _scratch.Loop("dst.img", 16 * MiB);
        using var faulty = FaultyDisk.WithBadSectors(_scratch.Folder, image, (0, 4096));

        using var client = new CopyClient(new CopyClientOptions { Name = "fault-stop", SubJobsInFlight = 1 });
        using var from = LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var job = client.Copy(new CopyRequest { Source = from, LengthBytes = 16 * MiB, Destinations = [new CopyDestination(to, 0)] });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Failed, job.State);
        Assert.True(job.ReadError);
        Assert.Equal(0, job.BytesCopied); // the first chunk failed and no other was started
        Assert.Equal(new byte[16 * MiB], Scratch.Read(target, 0, 16 * MiB));
    }
}
