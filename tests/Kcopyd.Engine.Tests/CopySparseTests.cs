using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Tests;

/// <summary>-Sparse and -DestinationIsZero: zero chunks and holes of the source are zeroed or skipped, not written.</summary>
public sealed class CopySparseTests : IDisposable
{
    private const long MiB = 1 << 20;
    private const long Size = 64 * MiB;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void Sparse_copy_of_a_ninety_percent_zero_source_punches_holes_and_allocates_a_tenth(IoBackend backend)
    {
        // A fully allocated source of written zeros (no holes to find) with 1 MiB of data every 10 MiB: 7 MiB of 64.
        string source = _scratch.Image("src.img", Size);
        File.WriteAllBytes(source, new byte[Size]);
        for (int k = 0; k < 7; k++) Scratch.FillRandom(source, k * 10 * MiB, MiB, seed: 20 + k);
        Assert.False(HasHoles(source));
        // The destination is full of old data, every block allocated: what is zero in the source must be freed.
        string target = _scratch.Image("dst.img", Size);
        Scratch.FillRandom(target, 0, Size, seed: 30);

        using var client = new CopyClient(new CopyClientOptions { IoBackend = backend });
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = new CountingDevice(LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite));
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = Size, Sparse = true, Verify = true });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Completed, job.State);
        Assert.Equal(7 * MiB, job.BytesCopied);
        Assert.Equal(57 * MiB, job.BytesZeroed);
        Assert.Equal(0, job.BytesSkipped);
        Assert.Equal(100, job.PercentComplete);
        Assert.Empty(job.Mismatches);
        Assert.Equal(7 * MiB, to.BytesOf(BlockOperation.Write));
        Assert.Equal(57 * MiB, to.BytesOf(BlockOperation.PunchZeroes));
        Assert.Equal(Scratch.Sha256(source, 0, Size), Scratch.Sha256(target, 0, Size));
        long allocated = AllocatedBytes(target);
        Assert.InRange(allocated, 7 * MiB, 8 * MiB);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)] // holes then go as chunks of up to 64 MiB, needing no pages
    public void Holes_of_a_sparse_image_source_are_not_read_and_with_destination_is_zero_not_written(bool verify)
    {
        // A sparse source: 2 MiB of data (one chunk) at 0, 20, 40 and 60 MiB, holes in between.
        string source = _scratch.Image("src.img", Size);
        foreach (long at in new[] { 0, 20 * MiB, 40 * MiB, 60 * MiB }) Scratch.FillRandom(source, at, 2 * MiB, seed: (int)(at / MiB));
        Assert.True(HasHoles(source));
        string target = _scratch.Image("dst.img", Size); // new and sparse: it reads as zeros

        using var client = new CopyClient();
        using var from = new CountingDevice(LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly));
        using var to = new CountingDevice(LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite));
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = Size, DestinationIsZero = true, Verify = verify });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Completed, job.State);
        Assert.Equal(8 * MiB, from.BytesOf(BlockOperation.Read)); // SEEK_DATA said where the data is: holes were not read
        Assert.Equal(8 * MiB, job.BytesCopied);
        Assert.Equal(56 * MiB, job.BytesSkipped);
        Assert.Equal(0, job.BytesZeroed);
        Assert.Equal(8 * MiB, to.BytesOf(BlockOperation.Write));
        Assert.Equal(0, to.BytesOf(BlockOperation.PunchZeroes) + to.BytesOf(BlockOperation.WriteZeroes));
        Assert.Equal(verify ? Size : 0, to.BytesOf(BlockOperation.Read)); // -Verify read back all of it, holes included
        Assert.Empty(job.Mismatches);
        Assert.Equal(Scratch.Sha256(source, 0, Size), Scratch.Sha256(target, 0, Size));
        Assert.InRange(AllocatedBytes(target), 8 * MiB, 9 * MiB);
    }

    [Fact]
    public void Destination_is_zero_on_a_destination_that_is_not_zero_fails_verify_there()
    {
        string source = _scratch.Image("src.img", 8 * MiB);
        Scratch.FillRandom(source, 0, 2 * MiB, seed: 40);
        string target = _scratch.Image("dst.img", 8 * MiB);
        Scratch.FillRandom(target, 6 * MiB, 4096, seed: 41); // the admin's promise is wrong in one chunk

        using var client = new CopyClient();
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = 8 * MiB, DestinationIsZero = true, Verify = true });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Failed, job.State);
        Assert.Equal([new CopyMismatch(target, 6 * MiB, 2 * MiB, false)], job.Mismatches);
    }

    [Fact]
    public void Sparse_copy_from_a_sparse_image_reads_only_its_data_and_zeroes_the_rest()
    {
        // 64 KiB of data in the middle of a 2 MiB chunk; holes elsewhere; the destination full of old data.
        string source = _scratch.Image("src.img", Size);
        Scratch.FillRandom(source, 33 * MiB, 64 * 1024, seed: 60);
        string target = _scratch.Image("dst.img", Size);
        Scratch.FillRandom(target, 0, Size, seed: 61);

        using var client = new CopyClient();
        using var from = new CountingDevice(LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly));
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = Size, Sparse = true });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Completed, job.State);
        Assert.Equal(64 * 1024, from.BytesOf(BlockOperation.Read)); // the chunk ends where the data does (SEEK_HOLE)
        Assert.Equal(64 * 1024, job.BytesCopied);
        Assert.Equal(Size - 64 * 1024, job.BytesZeroed);
        Assert.Equal(Scratch.Sha256(source, 0, Size), Scratch.Sha256(target, 0, Size));
        Assert.InRange(AllocatedBytes(target), 64 * 1024, 1 * MiB);
        Assert.Equal(client.PageCount, client.FreePages);
    }

    [Fact]
    public void Sparse_copy_to_a_loop_device_zeroes_the_zero_chunks_with_the_devices_zeroing()
    {
        string source = _scratch.Loop("src.img", 16 * MiB);
        Scratch.FillRandom(source, 3 * MiB, 64 * 1024, seed: 50);
        string target = _scratch.Loop("dst.img", 16 * MiB);
        Scratch.FillRandom(target, 0, 16 * MiB, seed: 51);

        using var client = new CopyClient();
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = 16 * MiB, Sparse = true });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Completed, job.State);
        Assert.Equal(64 * 1024, job.BytesCopied); // one page of data: zero detection works per 64 KiB page
        Assert.Equal(16 * MiB - 64 * 1024, job.BytesZeroed);
        Scratch.AssertSameBytes(source, 0, target, 0, 16 * MiB);
    }

    private static long AllocatedBytes(string path) => long.Parse(Scratch.Run("stat", $"-c %b {path}").Trim()) * 512;

    private static bool HasHoles(string path) => AllocatedBytes(path) < new FileInfo(path).Length;
}
