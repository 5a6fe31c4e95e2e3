using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Tests;

public sealed class MirrorLogTests : IDisposable
{
    private const long MiB = 1 << 20;
    private const long Region = 512 * 1024;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_fresh_log_file_starts_out_of_sync_and_a_mirror_recreated_from_it_after_recovery_copies_nothing()
    {
        string p0 = _scratch.Loop("l0.img", 4 * MiB), p1 = _scratch.Loop("l1.img", 4 * MiB);
        Scratch.FillRandom(p0, 0, 4 * MiB, seed: 51);
        string log = Path.Combine(_scratch.Folder, "mirror.log");
        var legs = new[] { Open(p0), Open(p1) };

        using (var first = new MirrorDevice(legs, new MirrorOptions { LogPath = log }))
        {
            Assert.Equal("disk", first.GetStatus().LogKind);
            Assert.Equal(log, first.GetStatus().LogPath);
            Assert.True(first.WaitForSync(Bounded));
            Assert.Equal(8, first.GetStatus().RecoveredRegions);
        }
        Assert.Equal(8, DiskDirtyLog.CountInSync(log, 8));

        using var second = new MirrorDevice(legs, new MirrorOptions { LogPath = log });
        Assert.True(second.WaitForSync(Bounded));
        Assert.Equal(0, second.GetStatus().RecoveredRegions);
        Scratch.AssertSameBytes(p0, 0, p1, 0, 4 * MiB);
    }

    [Fact]
    public void After_a_crash_a_mirror_recreated_from_its_log_recovers_only_the_regions_the_log_marks_out_of_sync()
    {
        const long size = 16 * MiB;
        string p0 = _scratch.Loop("l0.img", size), p1 = _scratch.Loop("l1.img", size);
        Scratch.FillRandom(p0, 0, size, seed: 61);
        Scratch.FillRandom(p1, 0, size, seed: 61); // identical legs: NoSync is the truth
        string log = Path.Combine(_scratch.Folder, "mirror.log");
        var legs = new[] { Open(p0), Open(p1) };
        long regions = size / Region;

        // A crash between the writes and the lazy clears: the marks reached the file, the clears never did.
        var crashing = new LogThatNeverCleans(DiskDirtyLog.Open(log, Region, regions, legs.Select(l => new LogLeg(LegIdentity.Of(l), l.Name, l.SizeBytes, LegHealth.Alive)).ToArray(), noSync: true));
        using (var first = new MirrorDevice(legs, new MirrorOptions { LogPath = log, NoSync = true }, sharedWorker: null, crashing))
        {
            var random = new Random(62);
            foreach (long region in new long[] { 3, 7, 20 })
            {
                var data = new byte[128 * 1024];
                random.NextBytes(data);
                Assert.Equal(0, PendingIo.WriteAndWait(first, region * Region + 64 * 1024, data, Bounded));
            }
        }
        Assert.Equal(regions - 3, DiskDirtyLog.CountInSync(log, regions));
        // The crash tore the write of region 7 on the second leg.
        Scratch.FillRandom(p1, 7 * Region, 256 * 1024, seed: 63);

        using var second = new MirrorDevice(legs, new MirrorOptions { LogPath = log });
        Assert.True(second.WaitForSync(Bounded), second.GetStatus().ToString());
        var status = second.GetStatus();
        Assert.Equal(3, status.RecoveredRegions);
        Assert.Equal(3 * Region, status.RecoveredBytes);
        Scratch.AssertSameBytes(p0, 0, p1, 0, size);
    }

    [Fact]
    public void A_mirror_disposed_during_recovery_leaves_exactly_the_rest_to_the_next_one()
    {
        const long size = 16 * MiB;
        string p0 = _scratch.Loop("l0.img", size), p1 = _scratch.Loop("l1.img", size);
        Scratch.FillRandom(p0, 0, size, seed: 71);
        string log = Path.Combine(_scratch.Folder, "mirror.log");
        var legs = new[] { Open(p0), Open(p1) };
        long regions = size / Region;
        var data = new byte[256 * 1024];
        new Random(72).NextBytes(data);

        using (var first = new MirrorDevice(legs, new MirrorOptions { LogPath = log, RecoveryBytesPerSecond = 2 * MiB }))
        {
            Wait.Until(() => first.InSyncRegions >= 2, Bounded, "two regions are recovered");
            // Region 30 is not recovered yet: the write goes to the default leg alone.
            Assert.Equal(0, PendingIo.WriteAndWait(first, 30 * Region, data, Bounded));
            Assert.Equal(RegionState.NoSync, first.StateOfRegion(30));
        }
        long left = regions - DiskDirtyLog.CountInSync(log, regions);
        Assert.InRange(left, 1, regions - 2);

        using var second = new MirrorDevice(legs, new MirrorOptions { LogPath = log });
        Assert.True(second.WaitForSync(Bounded), second.GetStatus().ToString());
        Assert.Equal(left, second.GetStatus().RecoveredRegions);
        Scratch.AssertSameBytes(p0, 0, p1, 0, size);
        Assert.Equal(data, Scratch.Read(p1, 30 * Region, data.Length));
    }

    private LinuxBlockDevice Open(string path)
    {
        var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite);
        _scratch.Track(device);
        return device;
    }

    /// <summary>A disk log whose clears never reach the file: the state a crash leaves between a write and its lazy clear.</summary>
    private sealed class LogThatNeverCleans(DiskDirtyLog inner) : IDirtyLog
    {
        public IReadOnlyList<LogLeg>? RecordedLegs => inner.RecordedLegs;
        public int RecordedDefaultLeg => inner.RecordedDefaultLeg;
        public bool ClearsPending => false;
        public void SetAllOutOfSync() => inner.SetAllOutOfSync();
        public void RestartResync() => inner.RestartResync();
        public void RecordLegs(IReadOnlyList<LogLeg> legs, int defaultLeg) => inner.RecordLegs(legs, defaultLeg);
        public string Kind => inner.Kind;
        public string? Path => inner.Path;
        public long RegionSizeBytes => inner.RegionSizeBytes;
        public long RegionCount => inner.RegionCount;
        public long SyncCount => inner.SyncCount;
        public bool InSync(long region) => inner.InSync(region);
        public void MarkRegion(long region) => inner.MarkRegion(region);
        public void ClearRegion(long region) { }
        public void SetRegionSync(long region, bool inSync) => inner.SetRegionSync(region, inSync);
        public bool TryGetResyncWork(out long region) => inner.TryGetResyncWork(out region);
        public void Flush(bool includeClears) => inner.Flush(includeClears: false);
        public void Dispose() => inner.Dispose();
    }
}
