using Kcopyd.Engine.Devices;
using static Kcopyd.Engine.Nbd.NbdProtocol;

namespace Kcopyd.Engine.Tests;

/// <summary>A device that fails under the server: the client gets EIO for that request alone, and the connection goes on.</summary>
public sealed class NbdServerFaultTests : IDisposable
{
    private const long MiB = 1 << 20;
    private const long KiB = 1 << 10;
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_read_of_bad_sectors_gets_EIO_and_the_reads_around_it_on_the_same_connection_get_their_data(bool structured)
    {
        string image = _scratch.Image("source.img", 4 * MiB);
        Scratch.FillRandom(image, 0, 4 * MiB, seed: 81);
        using var faulty = FaultyDisk.WithBadSectors(_scratch.Folder, image, (MiB, 64 * KiB));
        using var served = NbdServerTests.Served.Start(_scratch, LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadOnly));
        using var client = NbdServerWireTests.Wire.Open(served);
        client.Go(structured);

        Assert.Equal(Scratch.Read(image, 0, 64 * KiB), client.Call(CmdRead, 1, 0, 64 * 1024).Data);
        Assert.Equal(ErrIo, client.Call(CmdRead, 2, (ulong)MiB, 64 * 1024).Error);
        Assert.Equal(Scratch.Read(image, 2 * MiB, 64 * KiB), client.Call(CmdRead, 3, 2 * (ulong)MiB, 64 * 1024).Data);
        Assert.Equal(ErrIo, client.Call(CmdRead, 4, (ulong)(MiB + 32 * KiB), 4096).Error);
        Assert.Equal(Scratch.Read(image, 3 * MiB, 4096), client.Call(CmdRead, 5, 3 * (ulong)MiB, 4096).Data);
        client.Disconnect();
        Assert.Equal(2, served.Server.GetStatistics().RequestErrors);
        Assert.Equal(0, served.Server.GetStatistics().FailedConnections);
    }

    [Fact]
    public void Qemu_io_sees_an_input_output_error_for_the_bad_read_and_reads_on_after_it()
    {
        string image = _scratch.Image("source.img", 4 * MiB);
        Scratch.FillRandom(image, 0, 4 * MiB, seed: 82);
        using var faulty = FaultyDisk.WithBadSectors(_scratch.Folder, image, (MiB, 64 * KiB));
        using var served = NbdServerTests.Served.Start(_scratch, LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadOnly));

        // One qemu-io process, one connection: the error does not end it.
        var (_, output, error) = NbdServerTests.Tool.Run("qemu-io", "-r", "-f", "raw", "-c", "read 0 64k", "-c", "read 1M 64k", "-c", "read 2M 64k",
            served.Uri);
        string all = output + error;
        Assert.Contains("Input/output error", all);
        Assert.Contains("read 65536/65536 bytes at offset 0", all);
        Assert.Contains("read 65536/65536 bytes at offset 2097152", all);
        Assert.Equal(1, served.Server.GetStatistics().TotalConnections);
    }

    [Fact]
    public void A_failing_write_gets_EIO_and_the_next_requests_on_the_same_connection_succeed()
    {
        using var faulty = new FaultyDisk(_scratch.Folder, 16 * MiB);
        using var served = NbdServerTests.Served.Start(_scratch, LinuxBlockDevice.Open(faulty.Device, DeviceOpenOptions.ReadWrite));
        using var client = NbdServerWireTests.Wire.Open(served);
        client.Go(structured: true);
        var data = new byte[64 * 1024];
        new Random(83).NextBytes(data);

        Assert.Equal(0u, client.Call(CmdWrite, 1, 0, 64 * 1024, data).Error);
        faulty.FailWrites(true);
        Assert.Equal(ErrIo, client.Call(CmdWrite, 2, (ulong)MiB, 64 * 1024, data).Error);
        Assert.Equal(ErrIo, client.Call(CmdWrite, 3, (ulong)MiB, 64 * 1024, data, flags: CmdFlagFua).Error);
        Assert.Equal(data, client.Call(CmdRead, 4, 0, 64 * 1024).Data);
        faulty.FailWrites(false);
        Assert.Equal(0u, client.Call(CmdWrite, 5, (ulong)MiB, 64 * 1024, data, flags: CmdFlagFua).Error);
        Assert.Equal(data, client.Call(CmdRead, 6, (ulong)MiB, 64 * 1024).Data);
        client.Disconnect();
        Assert.Equal(0, served.Server.GetStatistics().FailedConnections);
    }
}
