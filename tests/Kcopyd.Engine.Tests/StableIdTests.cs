using System.Text.RegularExpressions;
using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Tests;

/// <summary>A leg's StableId names its storage, so it follows the storage when paths and loop numbers change.</summary>
public sealed class StableIdTests : IDisposable
{
    private const long MiB = 1 << 20;
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void The_stable_ids_of_two_image_files_follow_the_files_when_they_swap_names()
    {
        string a = _scratch.Image("a.img", 1 * MiB);
        string b = _scratch.Image("b.img", 1 * MiB);
        string idOfA = StableIdOf(a);
        string idOfB = StableIdOf(b);
        Assert.NotEqual(idOfA, idOfB);
        Assert.StartsWith("file:", idOfA);

        string swap = Path.Combine(_scratch.Folder, "swap.img");
        File.Move(a, swap);
        File.Move(b, a);
        File.Move(swap, b);

        Assert.Equal(idOfB, StableIdOf(a));
        Assert.Equal(idOfA, StableIdOf(b));
    }

    [Fact]
    public void A_loop_device_keeps_its_stable_id_when_reattached_under_another_number_after_its_file_was_renamed()
    {
        string image = _scratch.Image("leg.img", 4 * MiB);
        string first, idBefore;
        using (var loop = AttachedLoop.Over(image))
        {
            first = loop.Device;
            idBefore = StableIdOf(loop.Device);
        }
        // Holds the number just freed (unless another test took it already), so the reattach gets another one.
        _scratch.Track(AttachedLoop.Over(_scratch.Image("placeholder.img", 1 * MiB)));
        string renamed = Path.Combine(_scratch.Folder, "renamed.img");
        File.Move(image, renamed);
        var again = _scratch.Track(AttachedLoop.Over(renamed));

        Assert.NotEqual(first, again.Device);
        Assert.Equal(idBefore, StableIdOf(again.Device));
        using var file = LinuxBlockDevice.Open(renamed, DeviceOpenOptions.ReadOnly);
        Assert.Equal($"loop:{file.Identity.Device}:{file.Identity.Inode}@0", idBefore);
    }

    [Fact]
    public void A_partition_is_named_by_its_disk_and_its_start_in_bytes()
    {
        string image = _scratch.Image("parted.img", 8 * MiB);
        AttachedLoop.WriteMbr(image, startSector: 2048, sectorCount: 4096);
        var loop = _scratch.Track(AttachedLoop.WithPartitions(image));

        Assert.Equal(StableIdOf(loop.Device)[..^"@0".Length] + $"@{1 * MiB}", StableIdOf(loop.FirstPartition));
    }

    [Fact]
    public void A_disk_with_a_wwid_or_serial_in_sysfs_is_named_by_it()
    {
        // Whatever disks this machine has (a virtio disk with a serial here); loop devices have neither. The name
        // is asked for by device number: opening the machine's own disks may be forbidden to tests.
        int named = 0;
        foreach (string folder in Directory.GetDirectories("/sys/block"))
        {
            if (Path.GetFileName(folder).StartsWith("loop", StringComparison.Ordinal)) continue;
            string? expected = ExpectedName(folder);
            if (expected == null) continue;
            Assert.True(DeviceNumber.TryParse(File.ReadAllText(Path.Combine(folder, "dev")), out ulong dev));
            Assert.Equal(expected, StorageResolver.DiskName(dev));
            named++;
        }
        Assert.True(named > 0, "no disk on this machine has a wwid or serial in sysfs, so nothing was checked");
    }

    private static string? ExpectedName(string folder)
    {
        foreach (var (file, kind) in new[] { ("wwid", "wwid"), ("device/wwid", "wwid"), ("serial", "serial"), ("device/serial", "serial") })
        {
            string path = Path.Combine(folder, file);
            string value = File.Exists(path) ? File.ReadAllText(path).Trim() : "";
            if (value.Length > 0) return $"{kind}:{Regex.Replace(value, @"\s+", "_")}";
        }
        return null;
    }

    private static string StableIdOf(string path)
    {
        using var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadOnly);
        return device.StableId;
    }
}
