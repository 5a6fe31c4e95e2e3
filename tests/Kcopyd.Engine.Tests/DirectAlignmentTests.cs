using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Tests;

/// <summary>An image file opened with O_DIRECT takes the logical block size of the disk under its filesystem.</summary>
public sealed class DirectAlignmentTests : IDisposable
{
    private const long MiB = 1 << 20;
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void An_image_file_on_a_partition_is_aligned_to_the_block_size_of_the_partitions_disk()
    {
        string image = _scratch.Image("parted.img", 64 * MiB);
        AttachedLoop.WriteMbr(image, startSector: 2048, sectorCount: 120_000);
        var loop = _scratch.Track(AttachedLoop.WithPartitions(image));
        Scratch.Run("mkfs.ext4", $"-q -F {loop.FirstPartition}");
        string mountPoint = Directory.CreateDirectory(Path.Combine(_scratch.Folder, "mnt")).FullName;
        Scratch.Run("mount", $"{loop.FirstPartition} {mountPoint}");
        try
        {
            string file = Path.Combine(mountPoint, "leg.img");
            File.WriteAllBytes(file, new byte[MiB]);
            using var device = LinuxBlockDevice.Open(file, DeviceOpenOptions.ReadOnly);

            Assert.True(device.IsDirect);
            // The partition has no queue/ in sysfs; its disk, a loop device of 512-byte sectors, has.
            Assert.Equal(512, device.LogicalBlockSize);
        }
        finally
        {
            Scratch.Run("umount", mountPoint);
        }
    }
}
