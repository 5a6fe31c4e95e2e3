using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// Two names for the same bytes (a loop device and its image file, a partition and its disk, a loop with an offset)
/// are found to be one storage, so a copy between overlapping regions of it is refused before anything is written.
/// </summary>
public sealed class StorageExtentTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();
    private readonly CopyClient _client = new(new CopyClientOptions { Name = "storage-test" });

    public void Dispose()
    {
        _client.Dispose();
        _scratch.Dispose();
    }

    [Fact]
    public void A_loop_device_and_its_image_file_are_one_storage_and_copies_between_them_are_refused()
    {
        string image = _scratch.Image("disk.img", 8 * MiB);
        Scratch.FillRandom(image, 0, 8 * MiB, seed: 11);
        var loop = _scratch.Track(AttachedLoop.Over(image));
        var file = Open(image, DeviceOpenOptions.ReadOnly);
        var device = Open(loop.Device, DeviceOpenOptions.ReadWrite);
        Assert.Equal(file.Storage, device.Storage);
        string before = Scratch.Sha256(image, 0, 8 * MiB);

        AssertRefused(file, 0, device, 1 * MiB, 2 * MiB);

        var fileForWrite = Open(image, DeviceOpenOptions.ReadWrite);
        var loopAsSource = Open(loop.Device, DeviceOpenOptions.ReadOnly);
        AssertRefused(loopAsSource, 4 * MiB, fileForWrite, 3 * MiB, 2 * MiB);
        Assert.Equal(before, Scratch.Sha256(image, 0, 8 * MiB));
    }

    [Fact]
    public void A_partition_is_its_disk_from_the_partition_start_and_only_copies_into_its_own_range_are_refused()
    {
        string image = _scratch.Image("parted.img", 16 * MiB);
        Scratch.FillRandom(image, 0, 16 * MiB, seed: 12);
        AttachedLoop.WriteMbr(image, startSector: 2048, sectorCount: 8192); // 1 MiB to 5 MiB
        var loop = _scratch.Track(AttachedLoop.WithPartitions(image));
        var disk = Open(loop.Device, DeviceOpenOptions.ReadOnly);
        var partition = Open(loop.FirstPartition, DeviceOpenOptions.ReadWrite);
        var file = Open(image, DeviceOpenOptions.ReadOnly);

        Assert.Equal(new StorageExtent(file.Identity, 1 * MiB), partition.Storage);
        Assert.Equal(new StorageExtent(file.Identity, 0), disk.Storage);
        string before = Scratch.Sha256(image, 0, 16 * MiB);

        // Disk bytes 2 MiB..3 MiB are partition bytes 1 MiB..2 MiB.
        AssertRefused(disk, 2 * MiB, partition, 512 * 1024, 1 * MiB);
        Assert.Equal(before, Scratch.Sha256(image, 0, 16 * MiB));

        // Disk bytes 8 MiB..9 MiB lie past the partition: copying them into it is an ordinary copy.
        var original = Scratch.Read(image, 8 * MiB, 1 * MiB);
        AssertCopied(disk, 8 * MiB, partition, 0, 1 * MiB);
        Assert.Equal(original, Scratch.Read(image, 1 * MiB, 1 * MiB));
    }

    [Fact]
    public void A_loop_device_with_an_offset_overlaps_its_file_only_from_that_offset()
    {
        string image = _scratch.Image("offset.img", 8 * MiB);
        Scratch.FillRandom(image, 0, 8 * MiB, seed: 13);
        var loop = _scratch.Track(AttachedLoop.Over(image, $"--offset {2 * MiB}"));
        var file = Open(image, DeviceOpenOptions.ReadOnly);
        var device = Open(loop.Device, DeviceOpenOptions.ReadWrite);

        Assert.Equal(new StorageExtent(file.Identity, 2 * MiB), device.Storage);
        Assert.True(StorageExtent.Overlap(device, 0, file, 2 * MiB - 4096, 8192));
        Assert.False(StorageExtent.Overlap(device, 0, file, 2 * MiB - 4096, 4096)); // adjacent, not overlapping
        string before = Scratch.Sha256(image, 0, 8 * MiB);

        AssertRefused(file, 2 * MiB + 4096, device, 0, 1 * MiB);
        Assert.Equal(before, Scratch.Sha256(image, 0, 8 * MiB));

        // File bytes 1 MiB..2 MiB end where the loop device begins.
        var original = Scratch.Read(image, 1 * MiB, 1 * MiB);
        AssertCopied(file, 1 * MiB, device, 0, 1 * MiB);
        Assert.Equal(original, Scratch.Read(image, 2 * MiB, 1 * MiB));
    }

    [Fact]
    public void A_loop_device_over_a_loop_device_is_the_file_under_both_at_the_sum_of_their_offsets()
    {
        string image = _scratch.Image("nested.img", 8 * MiB);
        var inner = _scratch.Track(AttachedLoop.Over(image, $"--offset {1 * MiB}"));
        var outer = _scratch.Track(AttachedLoop.Over(inner.Device, $"--offset {1 * MiB}"));
        var file = Open(image, DeviceOpenOptions.ReadOnly);
        var device = Open(outer.Device, DeviceOpenOptions.ReadOnly);

        Assert.Equal(new StorageExtent(file.Identity, 2 * MiB), device.Storage);
        Assert.Equal($"loop:{file.Identity.Device}:{file.Identity.Inode}@{2 * MiB}", device.StableId);
    }

    [Fact]
    public void A_loop_device_over_a_partition_is_the_partitions_disk_from_the_partition_start_plus_the_loop_offset()
    {
        string image = _scratch.Image("parted.img", 16 * MiB);
        AttachedLoop.WriteMbr(image, startSector: 4096, sectorCount: 16384); // 2 MiB to 10 MiB
        var disk = _scratch.Track(AttachedLoop.WithPartitions(image));
        var loop = _scratch.Track(AttachedLoop.Over(disk.FirstPartition, $"--offset {1 * MiB}"));
        var file = Open(image, DeviceOpenOptions.ReadOnly);
        var device = Open(loop.Device, DeviceOpenOptions.ReadOnly);

        Assert.Equal(new StorageExtent(file.Identity, 3 * MiB), device.Storage);
    }

    [Fact]
    public void Two_image_files_are_two_storages_even_at_the_same_offsets()
    {
        var a = Open(_scratch.Image("a.img", 1 * MiB), DeviceOpenOptions.ReadOnly);
        var b = Open(_scratch.Image("b.img", 1 * MiB), DeviceOpenOptions.ReadWrite);

        Assert.NotEqual(a.Storage, b.Storage);
        Assert.False(StorageExtent.Overlap(a, 0, b, 0, 1 * MiB));
        Assert.True(StorageExtent.Overlap(a, 0, a, 4096, 8192));
    }

    private LinuxBlockDevice Open(string path, DeviceOpenOptions options) => _scratch.Track(LinuxBlockDevice.Open(path, options));

    private void AssertRefused(IBlockDevice source, long sourceOffset, IBlockDevice destination, long destinationOffset, long length)
    {
        var error = Assert.Throws<KcopydException>(() => _client.Copy(Request(source, sourceOffset, destination, destinationOffset, length)));
        Assert.Equal("OverlappingRegion", error.ErrorId);
    }

    private void AssertCopied(IBlockDevice source, long sourceOffset, IBlockDevice destination, long destinationOffset, long length)
    {
        var job = _client.Copy(Request(source, sourceOffset, destination, destinationOffset, length));
        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Completed, job.State);
    }

    private static CopyRequest Request(IBlockDevice source, long sourceOffset, IBlockDevice destination, long destinationOffset, long length)
        => new()
        {
            Source = source, SourceOffsetBytes = sourceOffset,
            Destinations = [new CopyDestination(destination, destinationOffset)], LengthBytes = length,
        };
}
