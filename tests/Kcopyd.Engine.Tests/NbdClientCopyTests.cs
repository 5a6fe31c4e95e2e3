using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Nbd;

namespace Kcopyd.Engine.Tests;

/// <summary>Copies to and from NBD exports of real servers (nbdkit, qemu-nbd), over a Unix socket and over TCP.</summary>
public sealed class NbdClientCopyTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(120);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData("nbdkit-memory")]
    [InlineData("nbdkit-file")]
    [InlineData("qemu-nbd")]
    public void A_copy_into_an_export_and_back_out_gives_the_source_bytes(string server)
    {
        const long size = 64 * MiB;
        string source = _scratch.Image("src.img", size);
        string back = _scratch.Image("back.img", size);
        Scratch.FillRandom(source, 0, size, seed: 11);
        var (nbd, backing) = Start(server, size);

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-copy" });
        using (var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly))
        using (var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite))
            RunCopy(client, from, export, size);
        if (backing != null) Assert.Equal(Scratch.Sha256(source, 0, size), Scratch.Sha256(backing, 0, size));
        using (var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadOnly))
        using (var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite))
            RunCopy(client, export, to, size);

        Assert.Equal(Scratch.Sha256(source, 0, size), Scratch.Sha256(back, 0, size));
    }

    [Fact]
    public void One_copy_to_three_exports_reads_the_source_once_and_makes_all_three_equal()
    {
        const long size = 32 * MiB;
        string source = _scratch.Image("src.img", size);
        Scratch.FillRandom(source, 0, size, seed: 12);
        var servers = new[] { Start("nbdkit-memory", size), Start("nbdkit-file", size), Start("qemu-nbd", size) };

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-fanout" });
        using var from = new CountingDevice(LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly));
        var exports = servers.Select(s => _scratch.Track(NbdDevice.Open(s.Server.Uri, DeviceOpenOptions.ReadWrite))).ToArray();
        var job = client.Copy(new CopyRequest
        {
            Source = from, LengthBytes = size, Destinations = exports.Select(e => new CopyDestination(e, 0)).ToArray(),
        });
        Assert.True(job.Wait(Bounded), "the copy did not end");
        Assert.Equal(CopyJobState.Completed, job.State);
        Assert.Equal(size, from.BytesRead);

        string expected = Scratch.Sha256(source, 0, size);
        for (int i = 0; i < exports.Length; i++)
        {
            string back = _scratch.Image($"back{i}.img", size);
            using (var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite))
                RunCopy(client, exports[i], to, size);
            Assert.True(expected == Scratch.Sha256(back, 0, size), $"{exports[i].Name} differs from the source");
        }
    }

    [Fact]
    public void A_copy_to_eight_exports_makes_each_identical_to_the_source()
    {
        const long size = 8 * MiB;
        string source = _scratch.Image("src.img", size);
        Scratch.FillRandom(source, 0, size, seed: 15);
        var exports = Enumerable.Range(0, CopyRequest.MaxDestinations)
            .Select(_ => _scratch.Track(NbdDevice.Open(Start("nbdkit-memory", size).Server.Uri, DeviceOpenOptions.ReadWrite)))
            .ToArray();

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-eight" });
        using (var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly))
        {
            var job = client.Copy(new CopyRequest
            {
                Source = from, LengthBytes = size, Destinations = exports.Select(e => new CopyDestination(e, 0)).ToArray(),
            });
            Assert.True(job.Wait(Bounded), "the copy did not end");
            Assert.True(job.State == CopyJobState.Completed, $"the copy ended {job.State}: {job.Error}");
        }
        var expected = Scratch.Read(source, 0, size);
        foreach (var export in exports)
            Assert.True(expected.AsSpan().SequenceEqual(PendingIo.ReadAndWait(export, 0, size, Bounded)), $"{export.Name} differs from the source");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Zeroing_a_range_of_an_export_reads_back_zeros_and_a_flush_succeeds(bool serverZeroes)
    {
        const long size = 16 * MiB;
        string source = _scratch.Image("src.img", size);
        string back = _scratch.Image("back.img", size);
        Scratch.FillRandom(source, 0, size, seed: 13);
        // nbdkit's nozero filter takes NBD_CMD_WRITE_ZEROES away: the device must write zeros itself.
        var nbd = _scratch.Track(serverZeroes
            ? ExternalNbdServer.Nbdkit(_scratch, "memory", $"{size}")
            : ExternalNbdServer.Nbdkit(_scratch, "--filter=nozero", "memory", $"{size}", "zeromode=none"));

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-zero" });
        using (var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite))
        {
            Assert.Equal(serverZeroes, export.CanWriteZeroes);
            using (var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly))
                RunCopy(client, from, export, size);
            var job = client.Zero([new CopyDestination(export, 3 * MiB)], 9 * MiB + 8192);
            Assert.True(job.Wait(Bounded), "the zeroing did not end");
            Assert.Equal(CopyJobState.Completed, job.State);

            Assert.True(export.CanFlush);
            using var flush = PendingIo.Flush(export);
            Assert.Equal(0, flush.Wait(Bounded));
            using (var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite))
                RunCopy(client, export, to, size);
        }

        var before = Scratch.Read(source, 0, size);
        var after = Scratch.Read(back, 0, size);
        int start = (int)(3 * MiB), end = (int)(12 * MiB + 8192);
        Assert.True(after.AsSpan(0, start).SequenceEqual(before.AsSpan(0, start)), "bytes before the range changed");
        Assert.True(after.AsSpan(start, end - start).IndexOfAnyExcept((byte)0) < 0, "the range is not all zeros");
        Assert.True(after.AsSpan(end).SequenceEqual(before.AsSpan(end)), "bytes after the range changed");
    }

    [Fact]
    public void A_TCP_export_copies_in_and_out_like_a_Unix_socket_one()
    {
        const long size = 32 * MiB;
        string source = _scratch.Image("src.img", size);
        string back = _scratch.Image("back.img", size);
        Scratch.FillRandom(source, 0, size, seed: 14);
        var nbd = _scratch.Track(ExternalNbdServer.NbdkitTcp(_scratch, "memory", $"{size}"));
        Assert.StartsWith("nbd://127.0.0.1:", nbd.Uri);

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-tcp" });
        using (var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite))
        {
            Assert.Equal(NbdTransport.Tcp, export.Uri.Transport);
            Assert.Equal(size, export.SizeBytes);
            using (var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly))
                RunCopy(client, from, export, size);
            using (var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite))
                RunCopy(client, export, to, size);
        }
        Assert.Equal(Scratch.Sha256(source, 0, size), Scratch.Sha256(back, 0, size));
    }

    [Fact]
    public void Hundreds_of_requests_in_flight_on_one_connection_each_get_their_own_data()
    {
        const int count = 300;
        const int length = 8192;
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "memory", "16M"));
        using var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite, new NbdClientOptions { MaxInFlight = 16 });

        var data = Enumerable.Range(0, count).Select(i => Pattern(i, length)).ToArray();
        var writes = Enumerable.Range(0, count).Select(i => PendingIo.Write(export, (long)i * length, data[i])).ToArray();
        foreach (var write in writes) Assert.Equal(0, write.Wait(Bounded));
        var reads = Enumerable.Range(0, count).Select(i => PendingIo.Read(export, (long)i * length, length)).ToArray();
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(0, reads[i].Wait(Bounded));
            Assert.True(data[i].AsSpan().SequenceEqual(reads[i].Data()), $"read {i} got another request's bytes");
        }
        foreach (var io in writes.Concat(reads)) io.Dispose();
    }

    private (ExternalNbdServer Server, string? Backing) Start(string server, long size)
    {
        string? backing = server == "nbdkit-memory" ? null : _scratch.Image($"{server}-{Guid.NewGuid():N}.img", size);
        var nbd = server switch
        {
            "nbdkit-memory" => ExternalNbdServer.Nbdkit(_scratch, "memory", $"{size}"),
            "nbdkit-file" => ExternalNbdServer.Nbdkit(_scratch, "file", $"file={backing}"),
            _ => ExternalNbdServer.QemuNbd(_scratch, backing!),
        };
        return (_scratch.Track(nbd), backing);
    }

    private static void RunCopy(CopyClient client, IBlockDevice from, IBlockDevice to, long length)
    {
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = length });
        Assert.True(job.Wait(Bounded), $"the copy {from.Name} -> {to.Name} did not end");
        Assert.True(job.State == CopyJobState.Completed, $"the copy {from.Name} -> {to.Name} ended {job.State}: {job.Error}");
        Assert.Equal(length, job.BytesCopied);
    }

    private static byte[] Pattern(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>The source seen through a counter of the bytes read from it.</summary>
    private sealed class CountingDevice(IBlockDevice inner) : DelegatingDevice(inner)
    {
        private long _bytesRead;

        public long BytesRead => Interlocked.Read(ref _bytesRead);

        public override void Submit(in BlockRequest request, IIoQueue queue)
        {
            if (request.Operation == BlockOperation.Read) Interlocked.Add(ref _bytesRead, request.LengthBytes);
            Inner.Submit(request, queue);
        }
    }
}
