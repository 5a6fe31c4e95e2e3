using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// A mirror never serves stale data and never loses an acknowledged write, on real failing devices (nbdkit's
/// error filter behind nbdfuse and a loop device): the default leg, the log's record of the legs, their identity.
/// </summary>
public sealed class MirrorIntegrityTests : IDisposable
{
    private const long MiB = 1 << 20;
    private const long Region = 512 * 1024;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_read_error_on_the_default_leg_during_the_first_recovery_never_serves_the_other_legs_old_bytes()
    {
        const long size = 16 * MiB;
        var faulty = Track(new FaultyDisk(_scratch.Folder, size));
        string second = _scratch.Loop("second.img", size);
        Scratch.FillRandom(faulty.Device, 0, size, seed: 201);
        Scratch.FillRandom(second, 0, size, seed: 202);
        byte[] truth = Scratch.Read(faulty.Device, 0, size);
        byte[] old = Scratch.Read(second, 0, size);
        var mirror = Track(new MirrorDevice([Open(faulty.Device), Open(second)], new MirrorOptions { RecoveryBytesPerSecond = 4 * MiB }));

        Wait.Until(() => mirror.InSyncRegions >= 4, Bounded, "the recovery to start");
        faulty.FailReads(true);
        int failed = 0;
        for (long region = 0; region < size / Region; region++)
        {
            var read = PendingIo.Read(mirror, region * Region, Region);
            int errno = read.Wait(Bounded);
            if (errno != 0) { failed++; continue; }
            // In sync regions come from the good leg, others only from the default leg: never the second leg's old bytes.
            Assert.Equal(truth.AsSpan((int)(region * Region), (int)Region).ToArray(), read.Data());
        }
        Thread.Sleep(1000); // the leg fails reads for a second
        faulty.FailReads(false);
        Assert.True(failed > 0, "some out-of-sync region was read while the default leg failed");

        Assert.True(mirror.WaitForSync(Bounded), mirror.GetStatus().ToString());
        var status = mirror.GetStatus();
        Assert.True(status.Legs[0].IsDefault);
        Assert.All(status.Legs, l => Assert.Equal(LegHealth.Alive, l.Health));
        Assert.Equal(truth, Scratch.Read(second, 0, size));
        Assert.Equal(truth, PendingIo.ReadAndWait(mirror, 0, size, Bounded));
        Assert.NotEqual(old, truth);
    }

    [Fact]
    public void Writes_acknowledged_after_a_leg_died_survive_re_creating_the_mirror_from_its_log()
    {
        const long size = 16 * MiB;
        var faulty = Track(new FaultyDisk(_scratch.Folder, size));
        string second = _scratch.Loop("second.img", size);
        string log = Path.Combine(_scratch.Folder, "mirror.log");
        var legs = new[] { Open(faulty.Device), Open(second) };
        var data = new byte[8 * MiB];
        new Random(211).NextBytes(data);

        using (var mirror = new MirrorDevice(legs, new MirrorOptions { LogPath = log, NoSync = true }))
        {
            faulty.FailWrites(true);
            Assert.Equal(0, PendingIo.WriteAndWait(mirror, 4 * MiB, data, Bounded));
            var status = mirror.GetStatus();
            Assert.Equal(LegHealth.Dead, status.Legs[0].Health);
            Assert.Equal(second, status.DefaultLeg);
            Assert.Contains(status.Warnings, w => w.Contains("is dead"));
            // Recorded before the write was acknowledged.
            var header = DiskDirtyLog.ReadHeader(log)!;
            Assert.Equal(1, header.DefaultLeg);
            Assert.Equal(LegHealth.Dead, header.Legs[0].Health);
        }
        faulty.FailWrites(false);

        using (var again = new MirrorDevice(legs, new MirrorOptions { LogPath = log }))
        {
            var status = again.GetStatus();
            Assert.Equal(second, status.DefaultLeg);
            Assert.Equal(LegHealth.Stale, status.Legs[0].Health);
            Assert.True(again.WaitForSync(Bounded), again.GetStatus().ToString());
            Assert.All(again.GetStatus().Legs, l => Assert.Equal(LegHealth.Alive, l.Health));
            Assert.Equal(data, PendingIo.ReadAndWait(again, 4 * MiB, data.Length, Bounded));
        }
        Assert.Equal(data, Scratch.Read(second, 4 * MiB, data.Length));
        Assert.Equal(data, Scratch.Read(faulty.Device, 4 * MiB, data.Length));
    }

    [Fact]
    public void The_default_leg_stays_while_the_mirror_is_out_of_sync_and_then_writes_fail_instead_of_being_lost()
    {
        const long size = 8 * MiB;
        var faulty = Track(new FaultyDisk(_scratch.Folder, size));
        string second = _scratch.Loop("second.img", size);
        Scratch.FillRandom(faulty.Device, 0, size, seed: 221);
        var mirror = Track(new MirrorDevice([Open(faulty.Device), Open(second)], new MirrorOptions { RecoveryBytesPerSecond = 1 * MiB }));
        Wait.Until(() => mirror.InSyncRegions >= 1, Bounded, "the recovery to start");

        faulty.FailWrites(true);
        Assert.NotEqual(0, PendingIo.WriteAndWait(mirror, 0, new byte[4096], Bounded));
        var status = mirror.GetStatus();
        Assert.Equal(LegHealth.Dead, status.Legs[0].Health);
        Assert.True(status.Legs[0].IsDefault);
        // Every later write fails: none may be acknowledged on a leg the default would be resynced over.
        Assert.NotEqual(0, PendingIo.WriteAndWait(mirror, size - 4096, new byte[4096], Bounded));
        long last = size / Region - 1;
        Assert.NotEqual(RegionState.Clean, mirror.StateOfRegion(last));
        Assert.NotEqual(0, PendingIo.Read(mirror, last * Region, 4096).Wait(Bounded));
    }

    [Fact]
    public void Two_legs_failing_at_once_never_leave_a_dead_leg_as_the_default()
    {
        const long size = 8 * MiB;
        var first = Track(new FaultyDisk(_scratch.Folder, size));
        var second = Track(new FaultyDisk(_scratch.Folder, size));
        string third = _scratch.Loop("third.img", size);
        var mirror = Track(new MirrorDevice([Open(first.Device), Open(second.Device), Open(third)], new MirrorOptions { NoSync = true }));
        first.FailWrites(true);
        second.FailWrites(true);
        var writes = Enumerable.Range(0, 16).Select(i => PendingIo.Write(mirror, i * Region, new byte[64 * 1024])).ToArray();
        Assert.All(writes, w => Assert.Equal(0, w.Wait(Bounded)));
        var status = mirror.GetStatus();
        Assert.Equal(third, status.DefaultLeg);
        Assert.Equal(LegHealth.Alive, status.Legs.Single(l => l.IsDefault).Health);
        foreach (var w in writes) w.Dispose();
    }

    [Fact]
    public void Legs_whose_names_were_swapped_are_refused_as_LegIdentityMismatch_and_nothing_is_written()
    {
        string a = _scratch.Image("a.img", 4 * MiB), b = _scratch.Image("b.img", 4 * MiB);
        Scratch.FillRandom(a, 0, 4 * MiB, seed: 231);
        string log = Path.Combine(_scratch.Folder, "mirror.log");
        using (var mirror = new MirrorDevice([LinuxBlockDevice.Open(a, DeviceOpenOptions.ReadWrite), LinuxBlockDevice.Open(b, DeviceOpenOptions.ReadWrite)],
                   new MirrorOptions { LogPath = log, OwnsLegs = true }))
            Assert.True(mirror.WaitForSync(Bounded));
        Scratch.FillRandom(a, 0, 1 * MiB, seed: 232); // written while the mirror was down: leg a is the one to keep
        File.Move(a, a + ".tmp");
        File.Move(b, a);
        File.Move(a + ".tmp", b);
        string hashA = Scratch.Sha256(a, 0, 4 * MiB), hashB = Scratch.Sha256(b, 0, 4 * MiB), hashLog = Scratch.Sha256(log, 0, new FileInfo(log).Length);

        var legs = new[] { Open(a), Open(b) };
        var error = Assert.Throws<KcopydException>(() => Track(new MirrorDevice(legs, new MirrorOptions { LogPath = log })));
        Assert.Equal("LegIdentityMismatch", error.ErrorId);
        Assert.Contains($"give them as {b}, {a}", error.Message);
        Assert.Equal(hashA, Scratch.Sha256(a, 0, 4 * MiB));
        Assert.Equal(hashB, Scratch.Sha256(b, 0, 4 * MiB));
        Assert.Equal(hashLog, Scratch.Sha256(log, 0, new FileInfo(log).Length));
    }

    [Fact]
    public void A_flipped_bit_in_one_slot_of_the_log_is_outvoted_and_in_both_is_LogCorrupt_unless_reset()
    {
        string p0 = _scratch.Loop("l0.img", 4 * MiB), p1 = _scratch.Loop("l1.img", 4 * MiB);
        string log = Path.Combine(_scratch.Folder, "mirror.log");
        var legs = new[] { Open(p0), Open(p1) };
        new MirrorDevice(legs, new MirrorOptions { LogPath = log, NoSync = true }).Dispose();
        long slot = new FileInfo(log).Length / 2;

        string good = Scratch.Sha256(log, 0, new FileInfo(log).Length);
        FlipBit(log, LogFormat.HeaderBytes * 8L + 3); // slot A's bitmap: slot B still holds the same state
        using (var mirror = new MirrorDevice(legs, new MirrorOptions { LogPath = log }))
            Assert.Equal(MirrorState.InSync, mirror.State);
        // The spoilt slot was written again from the good one.
        Assert.Equal(LogFormat.TryDecode(File.ReadAllBytes(log), out _)!.Value.Clean, LogFormat.TryDecode(File.ReadAllBytes(log).AsSpan((int)slot), out _)!.Value.Clean);
        Assert.NotEqual(good, Scratch.Sha256(log, 0, new FileInfo(log).Length)); // a newer generation

        FlipBit(log, LogFormat.HeaderBytes * 8L + 3);
        FlipBit(log, (slot + LogFormat.HeaderBytes) * 8L + 5);
        string hash = Scratch.Sha256(log, 0, new FileInfo(log).Length);
        var error = Assert.Throws<KcopydException>(() => Track(new MirrorDevice(legs, new MirrorOptions { LogPath = log })));
        Assert.Equal("LogCorrupt", error.ErrorId);
        Assert.Equal(hash, Scratch.Sha256(log, 0, new FileInfo(log).Length));

        using var reset = new MirrorDevice(legs, new MirrorOptions { LogPath = log, ResetLog = true, RecoveryBytesPerSecond = 1 * MiB });
        Assert.Equal(MirrorState.Recovering, reset.State);
        Assert.True(reset.InSyncRegions < reset.RegionCount);
    }

    private static void FlipBit(string path, long bit)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        file.Position = bit / 8;
        int b = file.ReadByte();
        file.Position = bit / 8;
        file.WriteByte((byte)(b ^ (1 << (int)(bit % 8))));
    }

    private LinuxBlockDevice Open(string path) => Track(LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite));

    private T Track<T>(T disposable) where T : IDisposable => _scratch.Track(disposable);
}
