using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Tests;

public sealed class MirrorTests : IDisposable
{
    private const long MiB = 1 << 20;
    private const long KiB = 1 << 10;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Writes_during_recovery_end_up_on_every_leg_and_every_leg_matches_the_default_after_it()
    {
        const long size = 16 * MiB;
        var paths = new[] { _scratch.Loop("l0.img", size), _scratch.Loop("l1.img", size), _scratch.Loop("l2.img", size) };
        Scratch.FillRandom(paths[0], 0, size, seed: 21);
        var expected = Scratch.Read(paths[0], 0, size);
        // Slow enough that the writes below meet regions in every state: recovered, recovering and not yet reached.
        var mirror = Track(new MirrorDevice(paths.Select(Open).ToArray(), new MirrorOptions { RecoveryBytesPerSecond = 4 * MiB }));
        Assert.Equal(MirrorState.Recovering, mirror.GetStatus().State);

        var random = new Random(22);
        var writes = new List<PendingIo>();
        for (int i = 0; i < 40; i++)
        {
            // Some cross region boundaries (up to 3 regions), some sit inside one; all block-aligned.
            long length = random.Next(1, 48) * 32 * KiB;
            long offset = random.NextInt64(0, (size - length) / (32 * KiB)) * 32 * KiB;
            var data = new byte[length];
            random.NextBytes(data);
            data.CopyTo(expected, offset);
            var write = PendingIo.Write(mirror, offset, data);
            _scratch.Track(write);
            Assert.Equal(0, write.Wait(Bounded)); // one at a time: overlapping writes land in order
            writes.Add(write);
        }
        Assert.True(mirror.GetStatus().InSyncRegions < mirror.RegionCount, "The recovery ended before the writes: they did not race it.");

        mirror.RecoveryThrottle.BytesPerSecond = 0;
        Assert.True(mirror.WaitForSync(Bounded), mirror.GetStatus().ToString());
        var status = mirror.GetStatus();
        Assert.Equal(MirrorState.InSync, status.State);
        Assert.Equal(100, status.SyncPercent);
        Assert.Equal(0, status.RequestPoolInUse);
        Assert.True(status.RecoveredRegions > 0);
        mirror.Flush();
        foreach (var path in paths) Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(Scratch.Read(path, 0, size)));
        Assert.Equal(expected, PendingIo.ReadAndWait(mirror, 0, size, Bounded));
    }

    [Fact]
    public void Reads_of_an_in_sync_mirror_are_balanced_across_the_legs_and_return_the_data()
    {
        const long size = 8 * MiB;
        var paths = new[] { _scratch.Loop("l0.img", size), _scratch.Loop("l1.img", size) };
        Scratch.FillRandom(paths[0], 0, size, seed: 31);
        var mirror = Track(new MirrorDevice(paths.Select(Open).ToArray()));
        Assert.True(mirror.WaitForSync(Bounded));

        var expected = Scratch.Read(paths[0], 0, size);
        for (long offset = 0; offset < size; offset += 256 * KiB)
            Assert.Equal(expected.AsSpan((int)offset, (int)(256 * KiB)).ToArray(), PendingIo.ReadAndWait(mirror, offset, 256 * KiB, Bounded));
        Assert.All(mirror.GetStatus().Legs, leg => Assert.True(leg.Reads >= 8, $"{leg.Path} served only {leg.Reads} of 32 reads"));
    }

    [Fact]
    public void A_NoSync_mirror_is_in_sync_at_once_copies_nothing_and_writes_reach_every_leg()
    {
        const long size = 4 * MiB;
        var paths = new[] { _scratch.Loop("l0.img", size), _scratch.Loop("l1.img", size) };
        Scratch.FillRandom(paths[0], 0, size, seed: 41);
        var mirror = Track(new MirrorDevice(paths.Select(Open).ToArray(), new MirrorOptions { NoSync = true, RegionSizeBytes = 64 * KiB }));
        Assert.True(mirror.WaitForSync(Bounded));

        var data = new byte[192 * KiB];
        new Random(42).NextBytes(data);
        Assert.Equal(0, PendingIo.WriteAndWait(mirror, 96 * KiB, data, Bounded)); // spans 4 regions of 64 KiB
        var status = mirror.GetStatus();
        Assert.Equal(0, status.RecoveredRegions);
        Assert.Equal(64, status.RegionCount);
        Assert.Equal(64, status.InSyncRegions);
        Assert.Equal("core", status.LogKind);
        Assert.Null(status.LogPath);
        foreach (var path in paths) Assert.Equal(data, Scratch.Read(path, 96 * KiB, data.Length));
        Assert.Equal(new byte[96 * KiB], Scratch.Read(paths[1], 0, 96 * KiB)); // never copied: NoSync trusted the legs
    }

    [Fact]
    public void A_write_across_regions_reaches_each_leg_as_one_write_of_the_same_bytes()
    {
        const long size = 4 * MiB;
        var legs = new[] { _scratch.Loop("l0.img", size), _scratch.Loop("l1.img", size) }.Select(p => new WriteRecorder(Open(p))).ToArray();
        var mirror = Track(new MirrorDevice(legs, new MirrorOptions { NoSync = true, RegionSizeBytes = 64 * KiB }));

        var data = new byte[256 * KiB];
        new Random(43).NextBytes(data);
        Assert.Equal(0, PendingIo.WriteAndWait(mirror, 96 * KiB, data, Bounded)); // five regions, the first and last in part
        foreach (var leg in legs)
        {
            Assert.Equal([(96 * KiB, 256 * KiB)], leg.Writes);
            Assert.Equal(data, Scratch.Read(leg.Name, 96 * KiB, data.Length));
        }
        Assert.Equal(64, mirror.GetStatus().InSyncRegions);
    }

    [Fact]
    public void Geometry_comes_from_the_legs_and_status_describes_the_mirror()
    {
        var l0 = Open(_scratch.Loop("l0.img", 5 * MiB));
        var l1 = Open(_scratch.Loop("l1.img", 3 * MiB + 4 * KiB));
        var mirror = Track(new MirrorDevice([l0, l1], new MirrorOptions { Name = "geo", RequestPoolSize = 7, RegionSizeBytes = 1 * MiB }));

        Assert.Equal(3 * MiB + 4 * KiB, mirror.SizeBytes);
        Assert.Equal(4, mirror.RegionCount); // the last region is a partial one
        Assert.Equal(DeviceKind.Mirror, mirror.Identity.Kind);
        Assert.True(mirror.WaitForSync(Bounded));
        var status = mirror.GetStatus();
        Assert.Equal("geo", status.Name);
        Assert.Equal(7, status.RequestPoolSize);
        Assert.Equal(1 * MiB, status.RegionSizeBytes);
        Assert.Equal([l0.Name, l1.Name], status.Legs.Select(l => l.Path));
        Assert.All(status.Legs, l => Assert.Equal(LegHealth.Alive, l.Health));
        Assert.True(status.Legs[0].IsDefault);
        Assert.Equal(4, status.RecoveredRegions);
        Assert.Equal(mirror.SizeBytes, status.RecoveredBytes);
        Assert.True(status.RecoveryBytesPerSecond > 0);
        Assert.NotEqual(mirror.Identity, Track(new MirrorDevice([Open(_scratch.Loop("l2.img", MiB)), Open(_scratch.Loop("l3.img", MiB))])).Identity);
    }

    [Fact]
    public void The_recovery_copies_are_internal_jobs_with_negative_ids_one_per_region_and_each_is_told()
    {
        const long size = 4 * MiB;
        var paths = new[] { _scratch.Loop("l0.img", size), _scratch.Loop("l1.img", size) };
        Scratch.FillRandom(paths[0], 0, size, seed: 41);
        var told = new System.Collections.Concurrent.ConcurrentBag<Kcopyd.Engine.Copy.CopyJob>();
        var mirror = Track(new MirrorDevice(paths.Select(Open).ToArray(), new MirrorOptions { InternalJobStarted = told.Add }));
        Assert.True(mirror.WaitForSync(Bounded), mirror.GetStatus().ToString());

        Assert.Equal(mirror.RegionCount, told.Count);
        Assert.All(told, job => Assert.True(job.Internal && job.Id < 0, job.ToString()));
        Assert.Equal(told.Count, told.Select(j => j.Id).Distinct().Count());
        using var client = new Kcopyd.Engine.Copy.CopyClient();
        var mine = client.Copy(new Kcopyd.Engine.Copy.CopyRequest { Source = Open(_scratch.Loop("l2.img", MiB)), Destinations = [new(Open(_scratch.Loop("l3.img", MiB)), 0)], LengthBytes = 64 * KiB });
        Assert.True(mine.Wait(Bounded));
        Assert.False(mine.Internal);
        Assert.True(mine.Id > 0);
    }

    [Fact]
    public void Requests_outside_the_mirror_or_unaligned_fail_with_EINVAL_and_a_flush_succeeds()
    {
        var mirror = Track(new MirrorDevice([Open(_scratch.Loop("l0.img", MiB)), Open(_scratch.Loop("l1.img", MiB))]));
        Assert.Equal(22, PendingIo.WriteAndWait(mirror, MiB - 512, new byte[1024], Bounded));
        Assert.Equal(22, PendingIo.WriteAndWait(mirror, 100, new byte[512], Bounded));
        using var flush = PendingIo.Flush(mirror);
        Assert.Equal(0, flush.Wait(Bounded));
        Assert.Equal(0, mirror.RequestPool.InUse);
    }

    [Fact]
    public void A_mirror_that_owns_its_legs_disposes_them_and_frees_them_for_another_mirror()
    {
        string p0 = _scratch.Loop("l0.img", MiB), p1 = _scratch.Loop("l1.img", MiB);
        var l0 = LinuxBlockDevice.Open(p0, DeviceOpenOptions.ReadWrite);
        var l1 = LinuxBlockDevice.Open(p1, DeviceOpenOptions.ReadWrite);
        new MirrorDevice([l0, l1], new MirrorOptions { OwnsLegs = true }).Dispose();
        Assert.Throws<ObjectDisposedException>(() => PendingIo.Read(l0, 0, 4096));
        Track(new MirrorDevice([Open(p0), Open(p1)])); // no LegInUse: the first mirror let go of them
    }

    [Fact]
    public async Task The_request_pool_blocks_when_empty_and_lets_a_waiter_in_when_a_slot_comes_back()
    {
        var pool = new RequestPool(2);
        Assert.True(pool.Acquire());
        Assert.True(pool.Acquire());
        var waiter = Task.Factory.StartNew(pool.Acquire, TaskCreationOptions.LongRunning);
        Wait.Until(() => pool.Waiters == 1, Bounded, "a third acquirer waits");
        Assert.False(waiter.IsCompleted);
        pool.Release();
        Assert.True(await waiter.WaitAsync(Bounded));
        Assert.Equal(2, pool.InUse);

        var failed = Task.Factory.StartNew(pool.Acquire, TaskCreationOptions.LongRunning);
        Wait.Until(() => pool.Waiters == 1, Bounded, "another acquirer waits");
        pool.Abort();
        Assert.False(await failed.WaitAsync(Bounded));
    }

    private LinuxBlockDevice Open(string path)
    {
        var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite);
        _scratch.Track(device);
        return device;
    }

    private MirrorDevice Track(MirrorDevice mirror)
    {
        _scratch.Track(mirror);
        return mirror;
    }

    /// <summary>A leg seen through a list of the writes that reach it.</summary>
    private sealed class WriteRecorder(IBlockDevice inner) : DelegatingDevice(inner)
    {
        private readonly List<(long, long)> _writes = new();

        public (long OffsetBytes, long LengthBytes)[] Writes { get { lock (_writes) return _writes.ToArray(); } }

        public override void Submit(in Kcopyd.Engine.Io.BlockRequest request, Kcopyd.Engine.Io.IIoQueue queue)
        {
            if (request.Operation == Kcopyd.Engine.Io.BlockOperation.Write) lock (_writes) _writes.Add((request.OffsetBytes, request.LengthBytes));
            Inner.Submit(request, queue);
        }
    }
}
