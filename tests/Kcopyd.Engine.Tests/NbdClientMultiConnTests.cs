using System.Text.RegularExpressions;
using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Nbd;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// Several connections to a server that says NBD_FLAG_CAN_MULTI_CONN, one to any other: counted by nbdkit's log
/// filter and by our own server, with the data checked by hash.
/// </summary>
public sealed partial class NbdClientMultiConnTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(120);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_multi_conn_server_gets_four_connections_that_all_carry_reads_and_writes_and_one_flush_covers_them()
    {
        const long size = 32 * MiB;
        string source = _scratch.Image("src.img", size);
        string backing = _scratch.Image("export.img", size);
        string back = _scratch.Image("back.img", size);
        string log = Path.Combine(_scratch.Folder, "nbdkit.log");
        Scratch.FillRandom(source, 0, size, seed: 41);
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "--filter=log", "file", $"file={backing}", $"logfile={log}"));

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-multi-conn" });
        using (var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly))
        using (var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite))
        {
            Assert.True(export.CanMultiConn);
            Assert.Equal(4, export.ConnectionCount);
            RunCopy(client, from, export, size);
            Assert.Equal(0, Flush(export));
        }
        Assert.Equal(Scratch.Sha256(source, 0, size), Scratch.Sha256(backing, 0, size));
        using (var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadOnly))
        using (var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite))
            RunCopy(client, export, to, size);
        Assert.Equal(Scratch.Sha256(source, 0, size), Scratch.Sha256(back, 0, size));

        // Connections 1-4 wrote, 5-8 read: each of them carried its share, and the one flush went to the first.
        var lines = File.ReadAllLines(log);
        int[] connects = Connections(lines, "Connect");
        Assert.Equal(Enumerable.Range(1, 8), connects);
        Assert.Equal(Enumerable.Range(1, 4), Connections(lines, "Write"));
        Assert.Equal(Enumerable.Range(5, 4), Connections(lines, "Read"));
        Assert.Equal([1], Connections(lines, "Flush"));
    }

    [Fact]
    public void A_server_without_multi_conn_gets_one_connection()
    {
        const long size = 16 * MiB;
        string backing = _scratch.Image("export.img", size);
        string back = _scratch.Image("back.img", size);
        Scratch.FillRandom(backing, 0, size, seed: 42);
        using var served = NbdServerTests.Served.Start(_scratch, LinuxBlockDevice.Open(backing, DeviceOpenOptions.ReadWrite),
            d => new NbdExport(d) { MultiConn = false });

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-one-conn" });
        using (var export = NbdDevice.Open(served.Uri, DeviceOpenOptions.ReadOnly))
        using (var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite))
        {
            Assert.False(export.CanMultiConn);
            Assert.Equal(1, export.ConnectionCount);
            RunCopy(client, export, to, size);
        }
        Assert.Equal(1, served.Server.GetStatistics().TotalConnections);
        Assert.Equal(Scratch.Sha256(backing, 0, size), Scratch.Sha256(back, 0, size));
    }

    [Fact]
    public void Our_own_server_of_a_block_device_gets_as_many_connections_as_the_options_ask()
    {
        const long size = 16 * MiB;
        string backing = _scratch.Image("export.img", size);
        string back = _scratch.Image("back.img", size);
        Scratch.FillRandom(backing, 0, size, seed: 43);
        using var served = NbdServerTests.Served.Start(_scratch, LinuxBlockDevice.Open(backing, DeviceOpenOptions.ReadWrite));

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-two-conn" });
        using (var export = NbdDevice.Open(served.Uri, DeviceOpenOptions.ReadOnly, new NbdClientOptions { Connections = 2 }))
        using (var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite))
        {
            Assert.Equal(2, export.ConnectionCount);
            RunCopy(client, export, to, size);
        }
        Assert.Equal(2, served.Server.GetStatistics().TotalConnections);
        Assert.Equal(Scratch.Sha256(backing, 0, size), Scratch.Sha256(back, 0, size));
    }

    [Fact]
    public void A_multi_conn_server_that_refuses_a_second_connection_is_used_over_the_first()
    {
        const long size = 16 * MiB;
        string backing = _scratch.Image("export.img", size);
        string back = _scratch.Image("back.img", size);
        Scratch.FillRandom(backing, 0, size, seed: 44);
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "--filter=limit", "file", $"file={backing}", "limit=1"));

        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-limited" });
        using (var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadOnly))
        using (var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite))
        {
            Assert.True(export.CanMultiConn);
            Assert.Equal(1, export.ConnectionCount);
            RunCopy(client, export, to, size);
        }
        Assert.Equal(Scratch.Sha256(backing, 0, size), Scratch.Sha256(back, 0, size));
    }

    /// <summary>The connection numbers (nbdkit's log filter's "connection=N") with at least one line of the verb, in order.</summary>
    private static int[] Connections(string[] lines, string verb)
        => lines.Select(l => LogLine().Match(l)).Where(m => m.Success && m.Groups[2].Value == verb)
            .Select(m => int.Parse(m.Groups[1].Value)).Distinct().Order().ToArray();

    [GeneratedRegex(@"connection=(\d+) (\w+)")]
    private static partial Regex LogLine();

    private static void RunCopy(CopyClient client, IBlockDevice from, IBlockDevice to, long length)
    {
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = length });
        Assert.True(job.Wait(Bounded), $"the copy {from.Name} -> {to.Name} did not end");
        Assert.True(job.State == CopyJobState.Completed, $"the copy {from.Name} -> {to.Name} ended {job.State}: {job.Error}");
        Assert.Equal(length, job.BytesCopied);
    }

    private static int Flush(IBlockDevice device)
    {
        var done = new Completion();
        device.Submit(new BlockRequest(BlockOperation.Flush, 0, 0, IoBuffers.None, done, 0), PendingIo.Queue);
        Assert.True(done.Task.Wait(Bounded), "the flush did not end");
        return done.Task.Result;
    }

    private sealed class Completion : IBlockCompletion
    {
        private readonly TaskCompletionSource<int> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<int> Task => _done.Task;

        public void Completed(int tag, int error) => _done.TrySetResult(error);
    }
}
