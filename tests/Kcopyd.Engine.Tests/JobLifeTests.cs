using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Tests;

/// <summary>Stopping, destroying, completion signals, zeroing, throttling and concurrency of copy jobs.</summary>
public sealed class JobLifeTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Stopping_a_job_mid_copy_ends_it_Stopped_with_exact_progress_and_no_leaks()
    {
        string source = _scratch.Loop("src.img", 64 * MiB);
        string target = _scratch.Loop("dst.img", 64 * MiB);
        Scratch.FillRandom(source, 0, 64 * MiB, seed: 11);
        using var client = new CopyClient(new CopyClientOptions { Name = "stop-test", SubJobsInFlight = 2 });
        client.Throttle.BytesPerSecond = 16 * MiB; // slow enough to stop in the middle
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = 64 * MiB });

        Assert.True(SpinWait.SpinUntil(() => job.BytesCopied >= 4 * MiB, Bounded));
        job.Stop();

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Stopped, job.State);
        Assert.InRange(job.BytesCopied, 4 * MiB, 64 * MiB - 1);
        Assert.Equal(0, job.BytesCopied % MiB); // whole chunks only
        Assert.Equal(client.PageCount, client.FreePages);
        Assert.Equal(0, client.ActiveJobs);
        Assert.True(client.Worker.ListsAreEmpty);
        // Chunks go in order with few in flight: what was copied is a prefix, and nothing past it was written.
        Scratch.AssertSameBytes(source, 0, target, 0, job.BytesCopied - 2 * MiB);
    }

    [Fact]
    public async Task Destroying_a_client_waits_for_its_running_jobs_then_frees_everything()
    {
        string source = _scratch.Loop("src.img", 32 * MiB);
        string target = _scratch.Loop("dst.img", 32 * MiB);
        Scratch.FillRandom(source, 0, 32 * MiB, seed: 12);
        var client = new CopyClient(new CopyClientOptions { Name = "destroy-test" });
        client.Throttle.BytesPerSecond = 64 * MiB;
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var jobs = Enumerable.Range(0, 4).Select(i => client.Copy(new CopyRequest
        {
            Source = from, SourceOffsetBytes = i * 8 * MiB, LengthBytes = 8 * MiB,
            Destinations = [new CopyDestination(to, i * 8 * MiB)],
        })).ToArray();

        await Task.Run(client.Dispose).WaitAsync(Bounded);

        Assert.All(jobs, j => Assert.Equal(CopyJobState.Completed, j.State));
        Scratch.AssertSameBytes(source, 0, target, 0, 32 * MiB);
        Assert.Throws<ObjectDisposedException>(() => client.Copy(new CopyRequest
        {
            Source = from, LengthBytes = MiB, Destinations = [new CopyDestination(to, 0)],
        }));
        Assert.DoesNotContain(ThreadNames(), n => n == "kcopyd/destroy-test");
    }

    [Fact]
    public async Task Completion_is_seen_both_as_a_callback_and_as_a_task()
    {
        string source = _scratch.Image("src.img", 8 * MiB);
        string target = _scratch.Image("dst.img", 8 * MiB);
        using var client = new CopyClient();
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        CopyJob? called = null;
        CopyJobState stateInCallback = CopyJobState.Queued;
        var job = client.Copy(new CopyRequest
        {
            Source = from, LengthBytes = 8 * MiB, Destinations = [new CopyDestination(to, 0)],
            Completed = j => { stateInCallback = j.State; called = j; },
        });

        await job.WaitAsync().WaitAsync(Bounded);
        Assert.Same(job, called);
        Assert.Equal(CopyJobState.Completed, stateInCallback);
        Assert.NotNull(job.EndTime);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Zeroing_makes_a_region_read_back_as_zeros_and_leaves_its_neighbours(bool blockDevice)
    {
        string path = blockDevice ? _scratch.Loop("z.img", 32 * MiB) : _scratch.Image("z.img", 32 * MiB);
        Scratch.FillRandom(path, 0, 32 * MiB, seed: 13);
        string before = Scratch.Sha256(path, 0, 4 * MiB);
        string after = Scratch.Sha256(path, 28 * MiB, 4 * MiB);
        using var client = new CopyClient(new CopyClientOptions { Name = "zero-test", ZeroChunkBytes = 8 * MiB });
        using var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite);

        var job = client.Zero([new CopyDestination(device, 4 * MiB)], 24 * MiB);

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Completed, job.State);
        Assert.Equal(24 * MiB, job.BytesCopied);
        Assert.Null(job.Source);
        Assert.Equal(new byte[24 * MiB], Scratch.Read(path, 4 * MiB, 24 * MiB));
        Assert.Equal(before, Scratch.Sha256(path, 0, 4 * MiB));
        Assert.Equal(after, Scratch.Sha256(path, 28 * MiB, 4 * MiB));
    }

    [Fact]
    public void Zeroing_falls_back_to_writing_zeros_where_there_is_no_zero_range()
    {
        // tmpfs has no FALLOC_FL_ZERO_RANGE, so the engine writes zero pages itself.
        string path = Path.Combine("/dev/shm", $"kcopyd-zero-{Guid.NewGuid():N}.img");
        try
        {
            using (var file = new FileStream(path, FileMode.CreateNew)) file.SetLength(8 * MiB);
            Scratch.FillRandom(path, 0, 8 * MiB, seed: 14);
            using var client = new CopyClient();
            using var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite);
            var job = client.Zero([new CopyDestination(device, MiB)], 6 * MiB);
            Assert.True(job.Wait(Bounded));
            Assert.Equal(CopyJobState.Completed, job.State);
            Assert.Equal(new byte[6 * MiB], Scratch.Read(path, MiB, 6 * MiB));
            Assert.NotEqual(new byte[MiB], Scratch.Read(path, 0, MiB));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_bandwidth_throttle_holds_the_client_to_its_rate()
    {
        string source = _scratch.Image("src.img", 16 * MiB);
        string target = _scratch.Image("dst.img", 16 * MiB);
        using var client = new CopyClient(new CopyClientOptions { Name = "throttle-test", SubJobSizeBytes = (int)MiB });
        client.Throttle.BytesPerSecond = 32 * MiB;
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var started = System.Diagnostics.Stopwatch.StartNew();
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = 16 * MiB });
        Assert.True(job.Wait(Bounded));
        // 16 chunks of 1 MiB at 32 MiB/s: each starts 1/32 s after the one before, so the last starts after
        // 15/32 s. Unthrottled, this copy takes a few tens of milliseconds.
        Assert.True(started.Elapsed >= TimeSpan.FromSeconds(15.0 / 32), $"took {started.Elapsed}");
        Assert.True(job.BytesPerSecond <= 36 * MiB, $"ran at {job.BytesPerSecond} B/s");
    }

    [Fact]
    public void A_duty_cycle_throttle_keeps_a_client_from_running_flat_out()
    {
        string source = _scratch.Loop("src.img", 128 * MiB);
        string target = _scratch.Loop("dst.img", 128 * MiB);
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        using var client = new CopyClient(new CopyClientOptions { Name = "duty-test" });
        client.Throttle.DutyCyclePercent = 10;
        var started = System.Diagnostics.Stopwatch.StartNew();
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = 128 * MiB });
        Assert.True(job.Wait(Bounded));
        var throttled = started.Elapsed;

        client.Throttle.DutyCyclePercent = 100;
        started.Restart();
        job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = 128 * MiB });
        Assert.True(job.Wait(Bounded));
        Assert.True(throttled > started.Elapsed * 3, $"10% duty cycle took {throttled}, unthrottled {started.Elapsed}");
    }

    [Fact]
    public async Task Many_concurrent_jobs_on_one_client_and_on_many_clients_all_copy_correctly()
    {
        string source = _scratch.Loop("src.img", 64 * MiB);
        string target = _scratch.Loop("dst.img", 64 * MiB);
        Scratch.FillRandom(source, 0, 64 * MiB, seed: 15);
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var clients = Enumerable.Range(0, 4).Select(i => new CopyClient(new CopyClientOptions { Name = $"many-{i}", PageCount = 32 })).ToArray();
        try
        {
            // 256 jobs of 256 KiB spread over four clients, all at once.
            var jobs = new List<CopyJob>();
            for (int i = 0; i < 256; i++)
            {
                long offset = i * 256 * 1024L;
                jobs.Add(clients[i % clients.Length].Copy(new CopyRequest
                {
                    Source = from, SourceOffsetBytes = offset, LengthBytes = 256 * 1024,
                    Destinations = [new CopyDestination(to, offset)],
                }));
            }
            await Task.WhenAll(jobs.Select(j => j.WaitAsync())).WaitAsync(Bounded);
            Assert.All(jobs, j => Assert.Equal(CopyJobState.Completed, j.State));
            Scratch.AssertSameBytes(source, 0, target, 0, 64 * MiB);
            Assert.All(clients, c => Assert.Equal(c.PageCount, c.FreePages));
        }
        finally
        {
            foreach (var client in clients) client.Dispose();
        }
    }

    [Fact]
    public async Task Thousands_of_small_jobs_reuse_pooled_sub_jobs()
    {
        string source = _scratch.Image("src.img", 64 * MiB);
        string target = _scratch.Image("dst.img", 64 * MiB);
        Scratch.FillRandom(source, 0, 64 * MiB, seed: 16);
        using var client = new CopyClient(new CopyClientOptions { Name = "pool-test" });
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);

        for (int batch = 0; batch < 4; batch++)
        {
            var jobs = Enumerable.Range(0, 256).Select(i => client.Copy(new CopyRequest
            {
                Source = from, SourceOffsetBytes = (batch * 256 + i) * 64 * 1024L, LengthBytes = 64 * 1024,
                Destinations = [new CopyDestination(to, (batch * 256 + i) * 64 * 1024L)],
            })).ToArray();
            await Task.WhenAll(jobs.Select(j => j.WaitAsync())).WaitAsync(Bounded);
        }

        Scratch.AssertSameBytes(source, 0, target, 0, 64 * MiB);
        // 1,024 jobs of one chunk each; at most 256 were ever in flight at once.
        Assert.InRange(client.SubJobsCreated, 1, 256);
    }

    internal static string[] ThreadNames()
        => Directory.GetDirectories("/proc/self/task")
            .Select(t => { try { return File.ReadAllText(Path.Combine(t, "comm")).Trim(); } catch (IOException) { return ""; } })
            .ToArray();
}
