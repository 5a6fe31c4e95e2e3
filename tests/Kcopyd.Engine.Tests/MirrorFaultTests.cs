using System.Diagnostics;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Tests;

/// <summary>Leg failures on real faulty block devices: nbdkit's error filter behind nbdfuse and a loop device (FAULTS.md).</summary>
public sealed class MirrorFaultTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();
    private readonly List<IDisposable> _cleanup = new();

    public void Dispose()
    {
        for (int i = _cleanup.Count - 1; i >= 0; i--) _cleanup[i].Dispose();
        _scratch.Dispose();
    }

    [Fact]
    public void A_failed_write_kills_its_leg_and_is_acknowledged_from_the_live_one()
    {
        var faulty = Track(new FaultyDisk(_scratch.Folder, 16 * MiB));
        string good = _scratch.Loop("good.img", 16 * MiB);
        var bad = Track(LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadWrite));
        // The faulty leg is the default one, so its death also hands the default to the live leg.
        var mirror = Track(new MirrorDevice([bad, Track(LinuxBlockDevice.Open(good, DeviceOpenOptions.ReadWrite))], new MirrorOptions { NoSync = true }));
        var before = new byte[64 * 1024];
        new Random(91).NextBytes(before);
        Assert.Equal(0, PendingIo.WriteAndWait(mirror, 1 * MiB, before, Bounded));
        Assert.Equal(MirrorState.InSync, mirror.GetStatus().State);

        faulty.FailWrites();
        var data = new byte[128 * 1024];
        new Random(92).NextBytes(data);
        Assert.Equal(0, PendingIo.WriteAndWait(mirror, 3 * MiB, data, Bounded));

        var status = mirror.GetStatus();
        Assert.Equal(MirrorState.Degraded, status.State);
        Assert.Equal(LegHealth.Dead, status.Legs[0].Health);
        Assert.True(status.Legs[0].WriteErrors >= 1);
        Assert.Equal(LegHealth.Alive, status.Legs[1].Health);
        Assert.True(status.Legs[1].IsDefault);
        Assert.Equal(RegionState.NoSync, mirror.StateOfRegion(3 * MiB / mirror.RegionSizeBytes)); // to resync when replaced
        Assert.Equal(data, Scratch.Read(good, 3 * MiB, data.Length));
        Assert.Equal(data, PendingIo.ReadAndWait(mirror, 3 * MiB, data.Length, Bounded));
        Assert.Equal(before, PendingIo.ReadAndWait(mirror, 1 * MiB, before.Length, Bounded));
        Assert.False(mirror.WaitForSync(TimeSpan.Zero));
    }

    [Fact]
    public void A_read_that_fails_on_one_leg_is_retried_on_the_other()
    {
        var faulty = Track(new FaultyDisk(_scratch.Folder, 16 * MiB));
        string good = _scratch.Loop("good.img", 16 * MiB);
        var mirror = Track(new MirrorDevice(
            [Track(LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadWrite)), Track(LinuxBlockDevice.Open(good, DeviceOpenOptions.ReadWrite))],
            new MirrorOptions { NoSync = true }));
        Assert.True(mirror.WaitForSync(Bounded));

        faulty.FailReads();
        // Regions never touched before, so no page cache under the loop device can answer for the faulty disk.
        for (long offset = 8 * MiB; offset < 12 * MiB; offset += 512 * 1024)
            Assert.Equal(new byte[64 * 1024], PendingIo.ReadAndWait(mirror, offset, 64 * 1024, Bounded));

        var status = mirror.GetStatus();
        Assert.True(status.Legs[0].ReadErrors >= 1, "No read went to the faulty leg.");
        Assert.Equal(MirrorState.InSync, status.State); // a read error alone does not kill a leg
    }

    private T Track<T>(T disposable) where T : IDisposable
    {
        _cleanup.Add(disposable);
        return disposable;
    }

    /// <summary>
    /// A memory disk from nbdkit whose reads or writes fail with EIO while a trigger file exists, exposed through
    /// nbdfuse as a file and through losetup as a real block device. Dispose detaches and unmounts it whatever happened.
    /// </summary>
    private sealed class FaultyDisk : IDisposable
    {
        private readonly string _mount;
        private readonly string _readTrigger;
        private readonly string _writeTrigger;
        private readonly Process _nbdfuse;

        public FaultyDisk(string folder, long sizeBytes)
        {
            _mount = Path.Combine(folder, "faulty-mnt");
            _readTrigger = Path.Combine(folder, "rfail");
            _writeTrigger = Path.Combine(folder, "wfail");
            Directory.CreateDirectory(_mount);
            string file = Path.Combine(_mount, "disk");
            _nbdfuse = Process.Start(new ProcessStartInfo("nbdfuse",
                $"{file} [ nbdkit --filter=error memory {sizeBytes} error-pread-rate=100% error-pread=EIO error-pread-file={_readTrigger} " +
                $"error-pwrite-rate=100% error-pwrite=EIO error-pwrite-file={_writeTrigger} ]")
            { RedirectStandardOutput = true, RedirectStandardError = true })!;
            try
            {
                Wait.Until(() => File.Exists(file) || _nbdfuse.HasExited, TimeSpan.FromSeconds(30), "nbdfuse exposes the disk");
                // Its error output is read only once it has exited: reading a live process's stream would wait for ever.
                if (_nbdfuse.HasExited) Assert.Fail($"nbdfuse exited: {_nbdfuse.StandardError.ReadToEnd()}");
                Device = Attach(file);
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        /// <summary>The loop device over the faulty disk.</summary>
        public string Device { get; private set; } = "";

        public void FailWrites() => File.WriteAllText(_writeTrigger, "");

        public void FailReads() => File.WriteAllText(_readTrigger, "");

        public void Dispose()
        {
            if (Device != "")
            {
                try { Scratch.Run("losetup", $"-d {Device}"); } catch (InvalidOperationException) { }
                Device = "";
            }
            try { Scratch.Run("fusermount3", $"-u {_mount}"); } catch (InvalidOperationException) { }
            if (!_nbdfuse.WaitForExit(10_000)) _nbdfuse.Kill(entireProcessTree: true);
            _nbdfuse.Dispose();
        }

        private static string Attach(string file)
        {
            for (int attempt = 1; ; attempt++)
            {
                try
                {
                    return Scratch.Run("losetup", $"--find --show {file}").Trim();
                }
                catch (InvalidOperationException) when (attempt < 5)
                {
                    Thread.Sleep(50 * attempt); // another test took the free device between find and attach
                }
            }
        }
    }
}
