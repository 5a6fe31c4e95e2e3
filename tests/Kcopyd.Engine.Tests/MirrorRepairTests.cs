using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Tests;

/// <summary>Re-adding a dead leg, replacing, adding and splitting legs, and scrubbing, on real devices.</summary>
public sealed class MirrorRepairTests : IDisposable
{
    private const long MiB = 1 << 20;
    private const long Region = 512 * 1024;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_dead_leg_that_works_again_is_re_added_and_gets_only_the_regions_written_while_it_was_out()
    {
        const long size = 16 * MiB;
        string first = _scratch.Loop("first.img", size);
        var faulty = Track(new FaultyDisk(_scratch.Folder, size));
        Scratch.FillRandom(first, 0, size, seed: 301);
        var mirror = Track(new MirrorDevice([Open(first), Open(faulty.Device)], new MirrorOptions()));
        Assert.True(mirror.WaitForSync(Bounded));

        faulty.FailWrites(true);
        var data = new byte[3 * Region];
        new Random(302).NextBytes(data);
        Assert.Equal(0, PendingIo.WriteAndWait(mirror, 10 * Region, data, Bounded));
        Assert.Equal(LegHealth.Dead, mirror.GetStatus().Legs[1].Health);
        faulty.FailWrites(false); // the device works again
        long recoveredBefore = mirror.GetStatus().RecoveredRegions;
        var reAdded = mirror.ReAddDeadLegs();
        Assert.Null(reAdded.Single().Error);

        Assert.True(mirror.WaitForSync(Bounded), mirror.GetStatus().ToString());
        var status = mirror.GetStatus();
        Assert.All(status.Legs, l => Assert.Equal(LegHealth.Alive, l.Health));
        Assert.Equal(3, status.RecoveredRegions - recoveredBefore);
        Scratch.AssertSameBytes(first, 0, faulty.Device, 0, size);
    }

    [Fact]
    public void A_dead_leg_is_replaced_by_a_new_device_that_is_resynced_whole_and_recorded_in_the_log()
    {
        const long size = 8 * MiB;
        string first = _scratch.Loop("first.img", size), spare = _scratch.Loop("spare.img", size);
        var faulty = Track(new FaultyDisk(_scratch.Folder, size));
        Scratch.FillRandom(first, 0, size, seed: 311);
        string log = Path.Combine(_scratch.Folder, "mirror.log");
        var mirror = Track(new MirrorDevice([Open(first), Open(faulty.Device)], new MirrorOptions { LogPath = log }));
        Assert.True(mirror.WaitForSync(Bounded));
        faulty.FailWrites(true);
        Assert.Equal(0, PendingIo.WriteAndWait(mirror, 0, new byte[4096], Bounded));

        var replacement = Open(spare);
        mirror.ReplaceLeg(faulty.Device, replacement);
        Assert.True(mirror.WaitForSync(Bounded), mirror.GetStatus().ToString());
        Assert.Equal(new[] { first, spare }, mirror.GetStatus().Legs.Select(l => l.Path));
        Scratch.AssertSameBytes(first, 0, spare, 0, size);
        Assert.Equal(mirror.Legs[1].StableId, DiskDirtyLog.ReadHeader(log)!.Legs[1].StableId);
        Assert.Throws<KcopydException>(() => mirror.ReplaceLeg("/dev/no-such-leg", Open(_scratch.Loop("x.img", size))));
    }

    [Fact]
    public void An_added_leg_is_synced_and_a_removed_in_sync_leg_is_a_consistent_copy()
    {
        const long size = 8 * MiB;
        string a = _scratch.Loop("a.img", size), b = _scratch.Loop("b.img", size), c = _scratch.Loop("c.img", size);
        Scratch.FillRandom(a, 0, size, seed: 321);
        var mirror = Track(new MirrorDevice([Open(a), Open(b)], new MirrorOptions()));
        Assert.True(mirror.WaitForSync(Bounded));

        var writing = Enumerable.Range(0, 8).Select(i => PendingIo.Write(mirror, i * Region, Enumerable.Repeat((byte)i, 64 * 1024).ToArray())).ToList();
        mirror.AddLeg(Open(c));
        Assert.All(writing, w => Assert.Equal(0, w.Wait(Bounded)));
        Assert.True(mirror.WaitForSync(Bounded), mirror.GetStatus().ToString());
        Scratch.AssertSameBytes(a, 0, c, 0, size);

        Assert.True(mirror.RemoveLeg(a)); // the default leg: the default moves to an alive one
        var status = mirror.GetStatus();
        Assert.Equal(new[] { b, c }, status.Legs.Select(l => l.Path));
        Assert.Equal(b, status.DefaultLeg);
        Scratch.AssertSameBytes(b, 0, a, 0, size);
        Assert.Equal("TooFewLegs", Assert.Throws<KcopydException>(() => mirror.RemoveLeg(b)).ErrorId);
        foreach (var w in writing) w.Dispose();
    }

    [Fact]
    public void A_scrub_finds_the_regions_whose_legs_differ_and_a_repair_rewrites_them_from_the_default_leg()
    {
        const long size = 8 * MiB;
        string a = _scratch.Loop("a.img", size), b = _scratch.Loop("b.img", size);
        Scratch.FillRandom(a, 0, size, seed: 331);
        Scratch.FillRandom(b, 0, size, seed: 331);
        var mirror = Track(new MirrorDevice([Open(a), Open(b)], new MirrorOptions { NoSync = true }));
        Assert.Empty(mirror.Scrub(repair: false));

        Scratch.FillRandom(b, 5 * Region + 4096, 4096, seed: 332); // behind the mirror's back
        Scratch.FillRandom(b, 11 * Region, 512, seed: 333);
        var found = mirror.Scrub(repair: false);
        Assert.Equal(new long[] { 5, 11 }, found.Select(m => m.Region));
        Assert.All(found, m => Assert.Equal(new[] { b }, m.Legs));
        Assert.Equal(5 * Region, found[0].OffsetBytes);
        Assert.Equal(Region, found[0].LengthBytes);

        Assert.Equal(2, mirror.Scrub(repair: true).Count);
        Assert.Empty(mirror.Scrub(repair: false));
        Scratch.AssertSameBytes(a, 0, b, 0, size);
        Assert.Equal(MirrorState.InSync, mirror.State);
    }

    private LinuxBlockDevice Open(string path) => Track(LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite));

    private T Track<T>(T disposable) where T : IDisposable => _scratch.Track(disposable);
}
