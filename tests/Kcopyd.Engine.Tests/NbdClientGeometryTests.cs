using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Nbd;
using Tmds.Linux;

namespace Kcopyd.Engine.Tests;

/// <summary>What an NBD device says of itself (size, block sizes, writability) is what its server said in the handshake.</summary>
public sealed class NbdClientGeometryTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Size_block_size_and_writability_come_from_the_server()
    {
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "memory", $"{5 * MiB + 4096}"));

        using (var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite))
        {
            Assert.Equal(5 * MiB + 4096, export.SizeBytes);
            // nbdkit memory gives no block sizes: any byte range would do, and the device reports 512.
            Assert.Equal(1, export.MinimumBlockSize);
            Assert.Equal(512, export.LogicalBlockSize);
            Assert.Equal(32 * MiB, export.MaximumRequestBytes);
            Assert.True(export.CanWrite);
            Assert.False(export.IsReadOnlyExport);
            Assert.True(export.CanFlush && export.CanTrim && export.CanWriteZeroes);
            Assert.Equal(DeviceKind.Network, export.Identity.Kind);
            Assert.StartsWith("nbd:nbd+unix:///?socket=", export.StableId);
            Assert.Equal(nbd.Uri, export.Name);
        }
        using (var readOnly = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadOnly))
            Assert.False(readOnly.CanWrite);
    }

    [Fact]
    public void The_servers_block_sizes_set_the_alignment_and_split_larger_requests()
    {
        // The policy filter advertises 4 KiB..1 MiB and fails any request outside it, so a 2 MiB sub-job sent whole would fail.
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "--filter=blocksize-policy", "memory", $"{16 * MiB}",
            "blocksize-minimum=4096", "blocksize-preferred=65536", "blocksize-maximum=1048576", "blocksize-error-policy=error"));
        const long size = 16 * MiB;
        string source = _scratch.Image("src.img", size);
        string back = _scratch.Image("back.img", size);
        Scratch.FillRandom(source, 0, size, seed: 21);

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-split" });
        using (var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite))
        {
            Assert.Equal(4096, export.MinimumBlockSize);
            Assert.Equal(4096, export.LogicalBlockSize);
            Assert.Equal(65536, export.PreferredBlockSize);
            Assert.Equal(MiB, export.MaximumRequestBytes);
            using (var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly))
                Copy(client, from, export, size);
            using (var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite))
                Copy(client, export, to, size);
            // Off the server's 4 KiB: refused by the device, not sent for the server to hang up on.
            using var unaligned = PendingIo.Read(export, 512, 4096);
            Assert.Equal(22, unaligned.Wait(Bounded));
            Assert.True(export.IsConnected);
        }
        Assert.Equal(Scratch.Sha256(source, 0, size), Scratch.Sha256(back, 0, size));
    }

    [Fact]
    public void A_qemu_nbd_export_reports_its_block_sizes()
    {
        string image = _scratch.Image("q.img", 8 * MiB);
        var nbd = _scratch.Track(ExternalNbdServer.QemuNbd(_scratch, image, "disk"));
        using var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite);
        Assert.Equal(8 * MiB, export.SizeBytes);
        Assert.Equal(512, export.LogicalBlockSize);
        Assert.Equal(32 * MiB, export.MaximumRequestBytes);
        Assert.Equal("disk", export.Uri.ExportName);
        Assert.True(export.CanWrite);
    }

    [Fact]
    public void A_read_only_export_is_not_writable_and_refuses_writes()
    {
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "-r", "memory", $"{8 * MiB}"));
        string source = _scratch.Image("src.img", 8 * MiB);

        using var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite);
        Assert.True(export.IsReadOnlyExport);
        Assert.False(export.CanWrite);

        // A copy to it is refused before anything moves, as for a local device opened read-only.
        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-ro" });
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        var refused = Assert.Throws<KcopydException>(() =>
            client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(export, 0)], LengthBytes = MiB }));
        Assert.Equal("DeviceReadOnly", refused.ErrorId);

        // A write that gets past the check anyway ends with EROFS; reads still work on the same connection.
        Assert.Equal(LibC.EROFS, PendingIo.WriteAndWait(export, 0, new byte[4096], Bounded));
        Assert.Equal(new byte[4096], PendingIo.ReadAndWait(export, 0, 4096, Bounded));
    }

    private static void Copy(CopyClient client, IBlockDevice from, IBlockDevice to, long length)
    {
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = length });
        Assert.True(job.Wait(Bounded), "the copy did not end");
        Assert.True(job.State == CopyJobState.Completed, $"the copy ended {job.State}: {job.Error}");
    }
}
