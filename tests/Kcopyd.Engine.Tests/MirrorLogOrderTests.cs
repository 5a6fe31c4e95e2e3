using System.Diagnostics;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Tests;

/// <summary>What reaches the log when: clears only after the legs' flushes, and a slow recovery never holds up disposal.</summary>
public sealed class MirrorLogOrderTests : IDisposable
{
    private const long MiB = 1 << 20;
    private const long Region = 512 * 1024;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_region_is_marked_clean_in_the_log_only_after_every_leg_flushed_its_write()
    {
        string p0 = _scratch.Loop("l0.img", 4 * MiB), p1 = _scratch.Loop("l1.img", 4 * MiB);
        string log = Path.Combine(_scratch.Folder, "mirror.log");
        var held = new FlushGate(Open(p1));
        var mirror = Track(new MirrorDevice([Open(p0), held], new MirrorOptions { LogPath = log, NoSync = true }));
        Assert.Equal(8, DiskDirtyLog.CountInSync(log, 8));

        Assert.Equal(0, PendingIo.WriteAndWait(mirror, 3 * Region, new byte[64 * 1024], Bounded));
        Assert.True(held.WaitForFlush(Bounded), "the lazy clear asks the legs to flush");
        // Well past the clear interval, the second leg's flush is still held: the region must stay dirty on disk.
        Thread.Sleep(1500);
        Assert.Equal(7, DiskDirtyLog.CountInSync(log, 8));

        held.Release();
        Wait.Until(() => DiskDirtyLog.CountInSync(log, 8) == 8, Bounded, "the clear to reach the log after the flush");
    }

    [Fact]
    public void A_mirror_with_a_slow_recovery_limit_is_disposed_at_once()
    {
        string p0 = _scratch.Loop("l0.img", 16 * MiB), p1 = _scratch.Loop("l1.img", 16 * MiB);
        Scratch.FillRandom(p0, 0, 16 * MiB, seed: 501);
        var mirror = new MirrorDevice([Open(p0), Open(p1)], new MirrorOptions { RecoveryBytesPerSecond = 64 * 1024 });
        Wait.Until(() => mirror.GetStatus().RecoveredBytes > 0, Bounded, "the recovery to start");
        var clock = Stopwatch.StartNew();
        mirror.Dispose();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"Dispose took {clock.Elapsed}");
    }

    private LinuxBlockDevice Open(string path) => Track(LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite));

    private T Track<T>(T disposable) where T : IDisposable => _scratch.Track(disposable);

    /// <summary>A real device whose flushes wait (on a thread of their own) until released; other requests pass.</summary>
    private sealed class FlushGate(IBlockDevice inner) : DelegatingDevice(inner)
    {
        private readonly ManualResetEventSlim _open = new(false);
        private readonly ManualResetEventSlim _flushed = new(false);

        public bool WaitForFlush(TimeSpan timeout) => _flushed.Wait(timeout);

        public void Release() => _open.Set();

        public override void Submit(in BlockRequest request, IIoQueue queue)
        {
            if (request.Operation != BlockOperation.Flush || _open.IsSet)
            {
                Inner.Submit(request, queue);
                return;
            }
            _flushed.Set();
            var held = request;
            ThreadPool.QueueUserWorkItem(_ =>
            {
                _open.Wait();
                Inner.Submit(held, queue);
            });
        }

        public override void Dispose()
        {
            _open.Set();
            base.Dispose();
        }
    }
}
