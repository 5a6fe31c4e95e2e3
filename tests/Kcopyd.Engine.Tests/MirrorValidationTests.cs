using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Tests;

/// <summary>Bad input is refused with a specific ErrorId before a byte is written, and leaves no leg claimed.</summary>
public sealed class MirrorValidationTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly DeviceOpenOptions Shared = new() { Write = true, Exclusive = false };
    private readonly Scratch _scratch = new();
    private readonly string[] _paths;
    private readonly LinuxBlockDevice[] _legs;
    private readonly string[] _hashes;

    public MirrorValidationTests()
    {
        _paths = Enumerable.Range(0, 3).Select(i => _scratch.Loop($"l{i}.img", 2 * MiB)).ToArray();
        for (int i = 0; i < _paths.Length; i++) Scratch.FillRandom(_paths[i], 0, 2 * MiB, seed: 80 + i);
        _hashes = _paths.Select(p => Scratch.Sha256(p, 0, 2 * MiB)).ToArray();
        _legs = _paths.Select(p => Track(LinuxBlockDevice.Open(p, DeviceOpenOptions.ReadWrite))).ToArray();
    }

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Fewer_than_two_legs_is_TooFewLegs()
    {
        Refused("TooFewLegs", [_legs[0]]);
        Refused("TooFewLegs", []);
    }

    [Fact]
    public void Legs_with_different_logical_block_sizes_are_LegBlockSizeMismatch()
    {
        var big = Track(LinuxBlockDevice.Open(_scratch.Loop("4k.img", 2 * MiB, logicalBlockSize: 4096), DeviceOpenOptions.ReadWrite));
        Assert.Equal(4096, big.LogicalBlockSize);
        Refused("LegBlockSizeMismatch", [_legs[0], big]);
    }

    [Fact]
    public void A_leg_given_twice_or_already_in_a_live_mirror_is_LegInUse()
    {
        Refused("LegInUse", [_legs[0], _legs[0]]);
        var sameDevice = Track(LinuxBlockDevice.Open(_paths[0], Shared));
        Refused("LegInUse", [_legs[0], sameDevice]);

        var live = Track(new MirrorDevice([_legs[0], _legs[1]], new MirrorOptions { NoSync = true }));
        Refused("LegInUse", [sameDevice, _legs[2]], checkLegs: false);   // a leg of a live mirror
        Refused("LegInUse", [live, _legs[1]], checkLegs: false);         // the mirror, and one of its own legs
        var upper = Track(new MirrorDevice([live, _legs[2]], new MirrorOptions { NoSync = true }));
        Refused("LegInUse", [live, sameDevice], checkLegs: false);       // a mirror already stacked in another
        Assert.NotNull(upper);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-512L)]
    [InlineData(3000L)]
    [InlineData(768L * 1024)]
    [InlineData(256L)]
    public void A_region_size_not_a_power_of_two_or_not_a_block_multiple_is_InvalidRegionSize(long regionSizeBytes)
        => Refused("InvalidRegionSize", [_legs[0], _legs[1]], new MirrorOptions { RegionSizeBytes = regionSizeBytes });

    [Fact]
    public void A_log_written_for_another_mirror_or_other_legs_is_refused_and_stays_as_it_was()
    {
        string log = Path.Combine(_scratch.Folder, "mirror.log");
        new MirrorDevice([_legs[0], _legs[1]], new MirrorOptions { LogPath = log, NoSync = true }).Dispose();
        string logHash = Scratch.Sha256(log, 0, new FileInfo(log).Length);

        Refused("LogMismatch", [_legs[0], _legs[1]], new MirrorOptions { LogPath = log, RegionSizeBytes = 1 * MiB });
        Refused("LegIdentityMismatch", [_legs[0], _legs[2]], new MirrorOptions { LogPath = log });
        Refused("LegIdentityMismatch", [_legs[1], _legs[0]], new MirrorOptions { LogPath = log });
        Assert.Equal(logHash, Scratch.Sha256(log, 0, new FileInfo(log).Length));

        string garbage = Path.Combine(_scratch.Folder, "garbage.log");
        File.WriteAllBytes(garbage, new byte[4096]);
        Refused("LogMismatch", [_legs[0], _legs[1]], new MirrorOptions { LogPath = garbage });
        Assert.Equal(new byte[4096], File.ReadAllBytes(garbage));
    }

    /// <summary>Asserts the ErrorId, that no leg changed, and that the legs were not left claimed.</summary>
    private void Refused(string errorId, IBlockDevice[] legs, MirrorOptions? options = null, bool checkLegs = true)
    {
        var error = Assert.Throws<KcopydException>(() => Track(new MirrorDevice(legs, options)));
        Assert.Equal(errorId, error.ErrorId);
        for (int i = 0; i < _paths.Length; i++) Assert.Equal(_hashes[i], Scratch.Sha256(_paths[i], 0, 2 * MiB));
        if (checkLegs) new MirrorDevice([_legs[0], _legs[1]], new MirrorOptions { NoSync = true }).Dispose();
    }

    private T Track<T>(T disposable) where T : IDisposable => _scratch.Track(disposable);
}
