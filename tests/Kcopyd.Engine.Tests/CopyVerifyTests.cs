using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Tests;

/// <summary>-Verify: every destination is re-read with its O_DIRECT fd and compared chunk by chunk with the source.</summary>
public sealed class CopyVerifyTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData(IoBackend.IoUring)]
    [InlineData(IoBackend.Blocking)]
    public void A_verified_copy_between_loop_devices_completes_with_no_mismatches(IoBackend backend)
    {
        string source = _scratch.Loop("src.img", 32 * MiB);
        string target = _scratch.Loop("dst.img", 32 * MiB);
        Scratch.FillRandom(source, 0, 32 * MiB, seed: 14);

        using var client = new CopyClient(new CopyClientOptions { IoBackend = backend });
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = new CountingDevice(LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite));
        var job = client.Copy(new CopyRequest
        {
            Source = from, SourceOffsetBytes = 4 * MiB, Destinations = [new CopyDestination(to, 2 * MiB)],
            LengthBytes = 20 * MiB + 4096, Verify = true,
        });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Completed, job.State);
        Assert.Null(job.Error);
        Assert.Empty(job.Mismatches);
        Assert.Equal(20 * MiB + 4096, job.BytesCopied);
        Assert.Equal(20 * MiB + 4096, to.BytesOf(BlockOperation.Read)); // every byte written was read back
        Assert.Empty(job.Warnings); // a loop device opens with O_DIRECT: nothing came from the page cache
        Scratch.AssertSameBytes(source, 4 * MiB, target, 2 * MiB, 20 * MiB + 4096);
        Assert.Equal(client.PageCount, client.FreePages);
    }

    [Fact]
    public void A_destination_that_drops_writes_fails_verify_and_is_named_with_the_merged_chunk_ranges()
    {
        string source = _scratch.Loop("src.img", 32 * MiB);
        string good = _scratch.Loop("good.img", 32 * MiB);
        string lying = _scratch.Loop("lying.img", 32 * MiB);
        Scratch.FillRandom(source, 0, 32 * MiB, seed: 15);

        using var client = new CopyClient();
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var toGood = LinuxBlockDevice.Open(good, DeviceOpenOptions.ReadWrite);
        // Destination offset 1 MiB: the lost writes land at 5..9 MiB (two 2 MiB chunks) and inside the chunk at 13 MiB.
        using var toLying = new DroppingWritesDevice(LinuxBlockDevice.Open(lying, DeviceOpenOptions.ReadWrite),
            (5 * MiB, 4 * MiB), (13 * MiB + 4096, 4096));
        var job = client.Copy(new CopyRequest
        {
            Source = from, Destinations = [new CopyDestination(toGood, 0), new CopyDestination(toLying, 1 * MiB)],
            LengthBytes = 24 * MiB, Verify = true,
        });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Failed, job.State);
        Assert.Equal(
            [new CopyMismatch(lying, 5 * MiB, 4 * MiB, false), new CopyMismatch(lying, 13 * MiB, 2 * MiB, false)],
            job.Mismatches);
        Assert.Equal(6 * MiB, job.MismatchedBytes);
        Assert.Contains($"'{lying}' did not read back as the source in 2 range(s)", job.Error);
        Assert.DoesNotContain(good, job.Error);
        Assert.False(job.ReadError);
        Assert.Empty(job.WriteErrors); // every write said it succeeded: only the re-read tells
        Assert.Equal(24 * MiB, job.BytesCopied); // the copy went on to the end, so every bad range is listed
        Scratch.AssertSameBytes(source, 0, good, 0, 24 * MiB);
        Assert.Equal(client.PageCount, client.FreePages);
    }

    [Fact]
    public void A_destination_that_drops_every_write_is_one_merged_range_not_one_per_chunk()
    {
        string source = _scratch.Loop("src.img", 32 * MiB);
        string lying = _scratch.Loop("lying.img", 32 * MiB);
        Scratch.FillRandom(source, 0, 32 * MiB, seed: 16);

        using var client = new CopyClient(new CopyClientOptions { SubJobSizeBytes = 256 * 1024 });
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = new DroppingWritesDevice(LinuxBlockDevice.Open(lying, DeviceOpenOptions.ReadWrite), (0, 32 * MiB));
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = 32 * MiB, Verify = true });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Failed, job.State);
        Assert.Equal([new CopyMismatch(lying, 0, 32 * MiB, false)], job.Mismatches);
    }

    [Fact]
    public void A_re_read_that_reports_success_without_filling_the_pages_is_a_mismatch()
    {
        // The re-read goes into the pages that held the source's chunk: left as they were, they would match.
        string source = _scratch.Loop("src.img", 8 * MiB);
        string target = _scratch.Loop("dst.img", 8 * MiB);
        Scratch.FillRandom(source, 0, 8 * MiB, seed: 18);

        using var client = new CopyClient();
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        using var to = new UnfilledReadsDevice(LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite));
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = 8 * MiB, Verify = true });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Failed, job.State);
        Assert.Equal([new CopyMismatch(target, 0, 8 * MiB, false)], job.Mismatches);
        Scratch.AssertSameBytes(source, 0, target, 0, 8 * MiB); // the writes did land: only the re-read lied
    }

    [Fact]
    public void A_destination_opened_without_O_DIRECT_is_verified_with_a_warning_that_the_page_cache_answered()
    {
        string source = _scratch.Image("src.img", 4 * MiB);
        Scratch.FillRandom(source, 0, 4 * MiB, seed: 17);
        string target = _scratch.Image("dst.img", 4 * MiB);

        using var client = new CopyClient();
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        // As a filesystem that refuses O_DIRECT leaves it: the device falls back to buffered I/O.
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite with { Direct = false });
        Assert.False(to.IsDirect);
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = 4 * MiB, Verify = true });

        Assert.True(job.Wait(Bounded));
        Assert.Equal(CopyJobState.Completed, job.State);
        Assert.Equal([$"{target}: re-read through the page cache for -Verify, since its filesystem refuses O_DIRECT."], job.Warnings);
    }

    [Fact]
    public void Verify_is_refused_for_a_zeroing_job()
    {
        string target = _scratch.Image("dst.img", 4 * MiB);
        using var client = new CopyClient();
        using var to = LinuxBlockDevice.Open(target, DeviceOpenOptions.ReadWrite);
        var e = Assert.Throws<KcopydException>(() => client.Copy(new CopyRequest { Destinations = [new CopyDestination(to, 0)], LengthBytes = 4 * MiB, Verify = true }));
        Assert.Equal("NotACopy", e.ErrorId);
    }
}
