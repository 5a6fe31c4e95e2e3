using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Tests;

/// <summary>The copy behaviour, run on each I/O backend: the result must not depend on which one moved the bytes.</summary>
public sealed class CopyTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void Copies_a_random_region_between_loop_devices_byte_for_byte(IoBackend backend)
    {
        string source = _scratch.Loop("src.img", 64 * MiB);
        string target = _scratch.Loop("dst.img", 64 * MiB);
        CopiesARandomRegion(source, target, backend);
    }

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void Copies_a_random_region_between_image_files_byte_for_byte(IoBackend backend)
    {
        string source = _scratch.Image("src.img", 64 * MiB);
        string target = _scratch.Image("dst.img", 64 * MiB);
        CopiesARandomRegion(source, target, backend);
    }

    private static void CopiesARandomRegion(string source, string target, IoBackend backend)
    {
        Scratch.FillRandom(source, 0, 64 * MiB, seed: 1);

        using var client = new CopyClient(new CopyClientOptions { Name = "copy-test", IoBackend = backend });
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var job = client.Copy(new CopyRequest
        {
            Source = from, SourceOffsetBytes = 4 * MiB,
            Destinations = [new CopyDestination(to, 8 * MiB)], LengthBytes = 40 * MiB + 4096,
        });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Completed, job.State);
        Assert.Equal(40 * MiB + 4096, job.BytesCopied);
        Assert.Null(job.Error);
        Assert.Null(job.ErrnoName);
        Scratch.AssertSameBytes(source, 4 * MiB, target, 8 * MiB, 40 * MiB + 4096);
        Assert.Equal(new byte[8 * MiB], Scratch.Read(target, 0, 8 * MiB)); // nothing written before the region
    }

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void Copy_to_eight_destinations_makes_each_identical_to_the_source(IoBackend backend)
    {
        string source = _scratch.Loop("src.img", 16 * MiB);
        Scratch.FillRandom(source, 0, 16 * MiB, seed: 8);
        var targets = Enumerable.Range(0, 8).Select(i => _scratch.Loop($"dst{i}.img", 16 * MiB)).ToArray();

        using var client = new CopyClient(new CopyClientOptions { IoBackend = backend });
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        var devices = targets.Select(t => LinuxBlockDevice.Open(t, DeviceOpenOptions.ReadWrite)).ToArray();
        try
        {
            var job = client.Copy(new CopyRequest
            {
                Source = from,
                Destinations = devices.Select(d => new CopyDestination(d, 0)).ToArray(),
                LengthBytes = 16 * MiB,
            });
            Assert.True(job.Wait(Bounded));
            Assert.Equal(CopyJobState.Completed, job.State);
            foreach (var target in targets) Scratch.AssertSameBytes(source, 0, target, 0, 16 * MiB);
        }
        finally
        {
            foreach (var device in devices) device.Dispose();
        }
    }

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void A_job_larger_than_the_page_pool_completes(IoBackend backend)
    {
        string source = _scratch.Image("src.img", 32 * MiB);
        string target = _scratch.Image("dst.img", 32 * MiB);
        Scratch.FillRandom(source, 0, 32 * MiB, seed: 3);

        // 4 pages of 64 KiB: 256 KiB of pool for a 32 MiB job.
        using var client = new CopyClient(new CopyClientOptions
        {
            PageCount = 4, SubJobSizeBytes = 128 * 1024, SubJobsInFlight = 4, IoBackend = backend,
        });
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = 32 * MiB });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Completed, job.State);
        Scratch.AssertSameBytes(source, 0, target, 0, 32 * MiB);
        Assert.Equal(client.PageCount, client.FreePages);
    }

    [Theory]
    [InlineData(IoBackend.IoUring, true)]
    [InlineData(IoBackend.IoUring, false)]
    [InlineData(IoBackend.Blocking, true)]
    [InlineData(IoBackend.Blocking, false)]
    public void Zeroing_clears_the_region_and_nothing_around_it(IoBackend backend, bool loopDevice)
    {
        string path = loopDevice ? _scratch.Loop("zero.img", 16 * MiB) : _scratch.Image("zero.img", 16 * MiB);
        Scratch.FillRandom(path, 0, 16 * MiB, seed: 5);
        var before = Scratch.Read(path, 0, 16 * MiB);

        using var client = new CopyClient(new CopyClientOptions { IoBackend = backend });
        using (var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite))
        {
            var job = client.Zero([new CopyDestination(device, 3 * MiB)], 9 * MiB + 8192);
            Assert.True(job.Wait(Bounded));
            Assert.Equal(CopyJobState.Completed, job.State);
            Assert.Equal(9 * MiB + 8192, job.BytesCopied);
        }

        var after = Scratch.Read(path, 0, 16 * MiB);
        Assert.True(after.AsSpan(0, (int)(3 * MiB)).SequenceEqual(before.AsSpan(0, (int)(3 * MiB))), "bytes before the region changed");
        Assert.True(after.AsSpan((int)(3 * MiB), (int)(9 * MiB + 8192)).IndexOfAnyExcept((byte)0) < 0, "the region is not all zeros");
        int end = (int)(12 * MiB + 8192);
        Assert.True(after.AsSpan(end).SequenceEqual(before.AsSpan(end)), "bytes after the region changed");
    }
}
