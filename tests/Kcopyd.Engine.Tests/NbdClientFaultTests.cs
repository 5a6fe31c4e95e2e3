using System.Diagnostics;
using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Nbd;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// A failing or vanishing NBD server fails the copy as a failing local disk would (ReadError, WriteErrors), never
/// hangs it, and a server's error on one request leaves the connection usable for the next.
/// </summary>
public sealed class NbdClientFaultTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_server_failing_reads_fails_the_job_with_a_read_error_and_the_device_stays_usable()
    {
        const long size = 16 * MiB;
        string trigger = Path.Combine(_scratch.Folder, "fail-reads");
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "--filter=error", "memory", $"{size}",
            "error-pread=EIO", "error-pread-rate=100%", $"error-pread-file={trigger}"));
        string source = _scratch.Image("src.img", size);
        string back = _scratch.Image("back.img", size);
        Scratch.FillRandom(source, 0, size, seed: 31);

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-read-error" });
        using var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite);
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite);
        Assert.Equal(4, export.ConnectionCount); // the EIO reaches the job whichever connection carried the read
        Assert.Equal(CopyJobState.Completed, Run(client, from, 0, export, 0, size).State);

        File.WriteAllText(trigger, "");
        var failed = Run(client, export, 0, to, 0, 8 * MiB);
        Assert.Equal(CopyJobState.Failed, failed.State);
        Assert.True(failed.ReadError);
        Assert.Empty(failed.WriteErrors);
        Assert.Contains($"Reading '{export.Name}' failed: Input/output error (EIO).", failed.Error);

        File.Delete(trigger);
        Assert.True(export.IsConnected);
        var later = Run(client, export, 8 * MiB, to, 8 * MiB, 8 * MiB);
        Assert.Equal(CopyJobState.Completed, later.State);
        Scratch.AssertSameBytes(source, 8 * MiB, back, 8 * MiB, 8 * MiB);
    }

    [Theory]
    [InlineData("EIO", "Input/output error")]
    [InlineData("EPERM", "Operation not permitted")]
    public void A_server_failing_writes_sets_that_destinations_write_error_and_the_device_stays_usable(string error, string text)
    {
        const long size = 16 * MiB;
        string trigger = Path.Combine(_scratch.Folder, "fail-writes");
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "--filter=error", "memory", $"{size}",
            $"error-pwrite={error}", "error-pwrite-rate=100%", $"error-pwrite-file={trigger}"));
        string source = _scratch.Image("src.img", size);
        string good = _scratch.Image("good.img", size);
        string back = _scratch.Image("back.img", size);
        Scratch.FillRandom(source, 0, size, seed: 32);

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-write-error" });
        using var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite);
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var ok = LinuxBlockDevice.Open(good, DeviceOpenOptions.ReadWrite);
        File.WriteAllText(trigger, "");
        var job = client.Copy(new CopyRequest
        {
            Source = from, LengthBytes = size, Destinations = [new CopyDestination(ok, 0), new CopyDestination(export, 0)],
        });
        Assert.True(job.Wait(Bounded), "the copy did not end");
        Assert.Equal(CopyJobState.Failed, job.State);
        Assert.False(job.ReadError);
        Assert.Equal(0b10UL, job.WriteErrorMask);
        Assert.Contains($"Writing '{export.Name}' failed: {text} ({error}).", job.Error);

        File.Delete(trigger);
        Assert.True(export.IsConnected);
        Assert.Equal(CopyJobState.Completed, Run(client, from, 0, export, 0, size).State);
        using (var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite))
            Assert.Equal(CopyJobState.Completed, Run(client, export, 0, to, 0, size).State);
        Scratch.AssertSameBytes(source, 0, back, 0, size);
    }

    [Fact]
    public void A_server_killed_mid_copy_fails_the_job_promptly_and_dispose_returns()
    {
        const long size = 64 * MiB;
        // Each 2 MiB write takes 100 ms at the server: the copy is still running when it dies.
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "--filter=delay", "memory", $"{size}", "wdelay=100ms"));
        string source = _scratch.Image("src.img", size);
        Scratch.FillRandom(source, 0, size, seed: 33);

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-killed" });
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite);
        try
        {
            // nbdkit's memory plugin allows multi-conn: all four connections lose their server at once.
            Assert.Equal(4, export.ConnectionCount);
            var job = client.Copy(new CopyRequest { Source = from, LengthBytes = size, Destinations = [new CopyDestination(export, 0)] });
            Wait.Until(() => job.BytesCopied >= 4 * MiB, Bounded, "some chunks reached the server");
            nbd.Kill();
            var clock = Stopwatch.StartNew();
            Assert.True(job.Wait(TimeSpan.FromSeconds(10)), "the job did not end within 10 s of the server's death");
            Assert.Equal(CopyJobState.Failed, job.State);
            Assert.Equal([export.Name], job.WriteErrors);
            Assert.True(job.BytesCopied < size);
            Assert.False(export.IsConnected);
            Assert.NotNull(export.ConnectionError);

            // Later requests fail at once instead of waiting for a server that is gone.
            Assert.Equal(5, PendingIo.WriteAndWait(export, 0, new byte[4096], TimeSpan.FromSeconds(5)));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"failing took {clock.Elapsed}");
        }
        finally
        {
            var clock = Stopwatch.StartNew();
            export.Dispose();
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"Dispose took {clock.Elapsed}");
        }
        Assert.Equal(client.PageCount, client.FreePages);
    }

    private static CopyJob Run(CopyClient client, IBlockDevice from, long fromOffset, IBlockDevice to, long toOffset, long length)
    {
        var job = client.Copy(new CopyRequest
        {
            Source = from, SourceOffsetBytes = fromOffset, LengthBytes = length, Destinations = [new CopyDestination(to, toOffset)],
        });
        Assert.True(job.Wait(Bounded), "the copy did not end");
        return job;
    }
}
