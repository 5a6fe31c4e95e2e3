using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Trust;

namespace Kcopyd.Engine.Tests;

/// <summary>Compare-Region's engine: planted differences are found exactly, merged, and named by input.</summary>
public sealed class RegionCompareTests : IDisposable
{
    private const long MiB = 1 << 20;
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Identical_regions_yield_nothing()
    {
        var (a, b) = TwoCopies(16 * MiB);
        Assert.Empty(Compare([a, b], 16 * MiB, out long compared));
        Assert.Equal(16 * MiB, compared);
    }

    [Fact]
    public void The_first_byte_the_last_byte_and_a_single_sector_are_found_exactly()
    {
        var (a, b) = TwoCopies(16 * MiB);
        Plant(b, 0);
        Plant(b, 16 * MiB - 1);
        Plant(b, 5 * MiB + 512, 512);
        var found = Compare([a, b], 16 * MiB, out _);
        Assert.Equal([new RegionDifference(0, 512, 0b10), new RegionDifference(5 * MiB + 512, 512, 0b10), new RegionDifference(16 * MiB - 512, 512, 0b10)], found);
    }

    [Fact]
    public void Adjacent_differing_blocks_merge_into_one_range_across_chunks_and_separate_ones_stay_apart()
    {
        var (a, b) = TwoCopies(16 * MiB);
        Plant(b, 1 * MiB - 4096, 8192);            // straddles the first chunk boundary
        for (int i = 0; i < 100; i++) Plant(b, 8 * MiB + i * 2048, 512); // 100 ranges, a block apart
        Plant(b, 12 * MiB, 3 * MiB);               // three chunks in one range
        var found = Compare([a, b], 16 * MiB, out _);
        Assert.Equal(102, found.Count);
        Assert.Equal(new RegionDifference(1 * MiB - 4096, 8192, 0b10), found[0]);
        Assert.All(Enumerable.Range(0, 100), i => Assert.Equal(new RegionDifference(8 * MiB + i * 2048, 512, 0b10), found[1 + i]));
        Assert.Equal(new RegionDifference(12 * MiB, 3 * MiB, 0b10), found[101]);
    }

    [Fact]
    public void Of_three_inputs_only_the_one_that_differs_is_named_and_a_change_of_inputs_splits_a_range()
    {
        string a = _scratch.Image("a.img", 8 * MiB), b = _scratch.Image("b.img", 8 * MiB), c = _scratch.Image("c.img", 8 * MiB);
        foreach (var p in new[] { a, b, c }) Scratch.FillRandom(p, 0, 8 * MiB, seed: 3);
        Plant(c, 2 * MiB, 4096);
        Plant(b, 2 * MiB + 4096, 4096);
        Plant(c, 2 * MiB + 4096, 4096);
        var found = Compare([a, b, c], 8 * MiB, out _);
        Assert.Equal([new RegionDifference(2 * MiB, 4096, 0b100), new RegionDifference(2 * MiB + 4096, 4096, 0b110)], found);
        Assert.Equal([2], found[0].Inputs());
    }

    [Fact]
    public void Of_forty_inputs_each_one_planted_in_its_own_block_is_named_alone()
    {
        var paths = Enumerable.Range(0, 40).Select(i => _scratch.Image($"i{i}.img", 2 * MiB)).ToArray();
        foreach (var p in paths) Scratch.FillRandom(p, 0, 2 * MiB, seed: 5);
        for (int i = 1; i < paths.Length; i++) Plant(paths[i], i * 40960L, 512);
        var found = Compare(paths, 2 * MiB, out long compared);
        Assert.Equal(2 * MiB, compared);
        Assert.Equal(Enumerable.Range(1, 39).Select(i => new RegionDifference(i * 40960L, 512, 1UL << i)), found);
    }

    [Fact]
    public void Loop_devices_at_different_offsets_compare_their_regions()
    {
        string a = _scratch.Loop("a.img", 16 * MiB), b = _scratch.Loop("b.img", 16 * MiB);
        Scratch.FillRandom(a, 4 * MiB, 8 * MiB, seed: 4);
        Scratch.FillRandom(b, 0, 8 * MiB, seed: 4);
        Plant(b, 7 * MiB + 1000);
        using var da = LinuxBlockDevice.Open(a, DeviceOpenOptions.ReadOnly);
        using var db = LinuxBlockDevice.Open(b, DeviceOpenOptions.ReadOnly);
        var found = new List<RegionDifference>();
        long compared = RegionComparer.Compare([new(da, 4 * MiB), new(db, 0)], 8 * MiB, d => { found.Add(d); return true; });
        Assert.Equal(8 * MiB, compared);
        Assert.Equal([new RegionDifference(7 * MiB + 512, 512, 0b10)], found);
    }

    [Fact]
    public void A_caller_that_stops_learns_where_to_go_on_and_first_only_stops_at_the_first_block()
    {
        var (a, b) = TwoCopies(8 * MiB);
        Plant(b, 1 * MiB, 2 * MiB);
        Plant(b, 6 * MiB, 512);
        using var da = LinuxBlockDevice.Open(a, DeviceOpenOptions.ReadOnly);
        using var db = LinuxBlockDevice.Open(b, DeviceOpenOptions.ReadOnly);
        var found = new List<RegionDifference>();
        long compared = RegionComparer.Compare([new(da, 0), new(db, 0)], 8 * MiB, d => { found.Add(d); return false; });
        Assert.Equal([new RegionDifference(1 * MiB, 2 * MiB, 0b10)], found);
        Assert.Equal(3 * MiB, compared);

        found.Clear();
        compared = RegionComparer.Compare([new(da, 0), new(db, 0)], 8 * MiB, d => { found.Add(d); return false; }, firstOnly: true);
        Assert.Equal([new RegionDifference(1 * MiB, 512, 0b10)], found);
        Assert.Equal(1 * MiB + 512, compared);
    }

    [Fact]
    public void Bad_regions_are_refused_with_their_error_ids()
    {
        var (a, b) = TwoCopies(1 * MiB);
        using var da = LinuxBlockDevice.Open(a, DeviceOpenOptions.ReadOnly);
        using var db = LinuxBlockDevice.Open(b, DeviceOpenOptions.ReadOnly);
        Assert.Equal("RegionOutOfRange", Assert.Throws<KcopydException>(() => RegionComparer.Compare([new(da, 0), new(db, 4096)], MiB, _ => true)).ErrorId);
        Assert.Equal("UnalignedRegion", Assert.Throws<KcopydException>(() => RegionComparer.Compare([new(da, 100), new(db, 0)], 4096, _ => true)).ErrorId);
        Assert.Equal("UnalignedRegion", Assert.Throws<KcopydException>(() => RegionComparer.Compare([new(da, 0), new(db, 0)], 1000, _ => true)).ErrorId);
        Assert.Equal("InputCount", Assert.Throws<KcopydException>(() => RegionComparer.Compare([new(da, 0)], 4096, _ => true)).ErrorId);
    }

    [Fact]
    public void A_cancelled_compare_returns_every_page_and_throws()
    {
        var (a, b) = TwoCopies(32 * MiB);
        using var da = LinuxBlockDevice.Open(a, DeviceOpenOptions.ReadOnly);
        using var db = LinuxBlockDevice.Open(b, DeviceOpenOptions.ReadOnly);
        using var cancel = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() =>
            RegionComparer.Compare([new(da, 0), new(db, 0)], 32 * MiB, _ => true, cancel.Token, done => { if (done >= 4 * MiB) cancel.Cancel(); }));
    }

    private (string, string) TwoCopies(long size)
    {
        string a = _scratch.Image("a.img", size), b = _scratch.Image("b.img", size);
        Scratch.FillRandom(a, 0, size, seed: 7);
        Scratch.FillRandom(b, 0, size, seed: 7);
        return (a, b);
    }

    private static List<RegionDifference> Compare(string[] paths, long length, out long compared)
    {
        var devices = paths.Select(p => LinuxBlockDevice.Open(p, DeviceOpenOptions.ReadOnly)).ToArray();
        try
        {
            var found = new List<RegionDifference>();
            compared = RegionComparer.Compare(devices.Select(d => new RegionInput(d, 0)).ToArray(), length, d => { found.Add(d); return true; });
            return found;
        }
        finally
        {
            foreach (var d in devices) d.Dispose();
        }
    }

    /// <summary>Flips every byte of a range, so it differs whatever it held.</summary>
    private static void Plant(string path, long offset, long length = 1)
    {
        var bytes = Scratch.Read(path, offset, length);
        for (int i = 0; i < bytes.Length; i++) bytes[i] ^= 0xFF;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        stream.Position = offset;
        stream.Write(bytes);
        stream.Flush(true);
    }
}
