using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;
using Kcopyd.Engine.Nbd;

namespace Kcopyd.Engine.Tests;

/// <summary>The NBD server as real clients meet it: nbdinfo, nbdcopy, qemu-img and qemu-io over a Unix socket.</summary>
public sealed class NbdServerTests : IDisposable
{
    private const long MiB = 1 << 20;
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Nbdinfo_shows_the_size_the_block_sizes_and_the_flags_the_server_advertises()
    {
        string device = _scratch.Loop("disk.img", 64 * MiB, logicalBlockSize: 4096);
        using var served = Served.Start(_scratch, LinuxBlockDevice.Open(device, DeviceOpenOptions.ReadWrite),
            device => new NbdExport(device) { Name = "disk", Description = "a kcopyd test disk" });

        var json = JsonDocument.Parse(Tool.Check("nbdinfo", "--json", served.Uri)).RootElement;
        Assert.True(json.GetProperty("structured").GetBoolean());
        var export = json.GetProperty("exports")[0];
        Assert.Equal("disk", export.GetProperty("export-name").GetString());
        Assert.Equal("a kcopyd test disk", export.GetProperty("description").GetString());
        Assert.Equal(64 * MiB, export.GetProperty("export-size").GetInt64());
        Assert.Equal(4096, export.GetProperty("block_size_minimum").GetInt32());
        Assert.Equal(NbdExport.DefaultPreferredBlockSize, export.GetProperty("block_size_preferred").GetInt32());
        Assert.Equal(NbdExport.DefaultMaxRequestBytes, export.GetProperty("block_size_maximum").GetInt32());
        foreach (string yes in new[] { "can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn", "can_df" })
            Assert.True(export.GetProperty(yes).GetBoolean(), yes);
        foreach (string no in new[] { "is_read_only", "can_fast_zero", "can_cache", "is_rotational" })
            Assert.False(export.GetProperty(no).GetBoolean(), no);
    }

    [Fact]
    public void Nbdcopy_writes_random_data_into_the_export_and_reads_the_same_bytes_out_of_it()
    {
        const long size = 32 * MiB;
        string source = _scratch.Image("source.img", size);
        Scratch.FillRandom(source, 0, size, seed: 20261202);
        string image = _scratch.Image("export.img", size);
        string copy = _scratch.Image("copy.img", size);
        using var served = Served.Start(_scratch, LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite));

        Tool.Check("nbdcopy", "--flush", source, served.Uri);
        Scratch.AssertSameBytes(source, 0, image, 0, size);
        Tool.Check("nbdcopy", served.Uri, copy);
        Scratch.AssertSameBytes(source, 0, copy, 0, size);

        var statistics = served.Server.GetStatistics();
        Assert.Equal(size, statistics.BytesWritten);
        Assert.True(statistics.BytesRead >= size, $"only {statistics.BytesRead} bytes read");
        Assert.Equal(0, statistics.RequestErrors);
        Assert.Equal(0, statistics.FailedConnections);
    }

    [Fact]
    public void Qemu_img_and_qemu_io_read_and_write_through_structured_replies()
    {
        const long size = 16 * MiB;
        string image = _scratch.Image("export.img", size);
        Scratch.FillRandom(image, 0, size, seed: 3);
        string expected = Scratch.Sha256(image, 0, size);
        using var served = Served.Start(_scratch, LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite));

        string converted = Path.Combine(_scratch.Folder, "converted.img");
        Tool.Check("qemu-img", "convert", "-f", "raw", "-O", "raw", served.Uri, converted);
        Assert.Equal(expected, Scratch.Sha256(converted, 0, size));

        Tool.Check("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 1M", "-c", "write -f -P 0xcd 4M 64k", served.Uri);
        string verified = Tool.Check("qemu-io", "-f", "raw", "-c", "read -P 0xab 0 1M", "-c", "read -P 0xcd 4M 64k", served.Uri);
        Assert.DoesNotContain("Pattern verification failed", verified);
        Assert.All(Scratch.Read(image, 0, MiB), b => Assert.Equal(0xab, b));
        Assert.All(Scratch.Read(image, 4 * MiB, 64 * 1024), b => Assert.Equal(0xcd, b));
        Assert.Equal(Scratch.Sha256(converted, MiB, 3 * MiB), Scratch.Sha256(image, MiB, 3 * MiB));
        Assert.Equal(0, served.Server.GetStatistics().RequestErrors);
    }

    [Fact]
    public void Trim_and_write_zeroes_from_a_client_zero_the_range_on_the_device_and_nothing_else()
    {
        const long size = 16 * MiB;
        string device = _scratch.Loop("export.img", size);
        Scratch.FillRandom(device, 0, size, seed: 4);
        var before = Scratch.Read(device, 0, size);
        using var served = Served.Start(_scratch, LinuxBlockDevice.Open(device, DeviceOpenOptions.ReadWrite));

        // write -z sends WRITE_ZEROES with NO_HOLE, -u without it, -f with FUA; discard sends TRIM.
        Tool.Check("qemu-io", "-f", "raw", "-c", "write -z 1M 1M", "-c", "write -z -u 3M 512k", "-c", "write -z -f 5M 64k",
            "-c", "discard 8M 2M", "-c", "flush", served.Uri);

        var after = Scratch.Read(device, 0, size);
        var zeroed = new[] { (MiB, MiB), (3 * MiB, 512 * 1024L), (5 * MiB, 64 * 1024L), (8 * MiB, 2 * MiB) };
        for (long i = 0; i < size; i += 512)
        {
            bool inZeroed = zeroed.Any(r => i >= r.Item1 && i < r.Item1 + r.Item2);
            var block = after.AsSpan((int)i, 512);
            if (inZeroed) Assert.True(block.IndexOfAnyExcept((byte)0) < 0, $"byte {i} was not zeroed");
            else Assert.True(block.SequenceEqual(before.AsSpan((int)i, 512)), $"byte {i} outside the zeroed ranges changed");
        }
        // No WRITE carried zeros in their place: the client used the commands themselves.
        Assert.Equal(0, served.Server.GetStatistics().BytesWritten);
        Assert.Equal(0, served.Server.GetStatistics().RequestErrors);
    }

    [Fact]
    public async Task Several_connections_with_many_requests_in_flight_copy_the_data_in_and_out()
    {
        const long size = 64 * MiB;
        string source = _scratch.Image("source.img", size);
        Scratch.FillRandom(source, 0, size, seed: 5);
        string device = _scratch.Loop("export.img", size);
        string copy = _scratch.Image("copy.img", size);
        using var served = Served.Start(_scratch, LinuxBlockDevice.Open(device, DeviceOpenOptions.ReadWrite));

        int peak = 0;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                peak = Math.Max(peak, served.Server.ConnectionCount);
                await Task.Delay(5);
            }
        });
        // nbdcopy opens --connections only when the server advertises CAN_MULTI_CONN.
        Tool.Check("nbdcopy", "--connections=4", "--threads=4", "--requests=16", "--request-size=262144", "--flush", source, served.Uri);
        Tool.Check("nbdcopy", "--connections=4", "--threads=4", "--requests=16", served.Uri, copy);
        sampling.Cancel();
        await sampler;

        Scratch.AssertSameBytes(source, 0, device, 0, size);
        Scratch.AssertSameBytes(source, 0, copy, 0, size);
        var statistics = served.Server.GetStatistics();
        Assert.True(statistics.TotalConnections >= 8, $"{statistics.TotalConnections} connections");
        Assert.True(peak >= 4, $"at most {peak} connections at once");
        Assert.True(served.Server.PeakDeviceRequests > 4, $"at most {served.Server.PeakDeviceRequests} requests at the device at once");
        Assert.Equal(0, statistics.RequestErrors);
    }

    [Fact]
    public async Task A_server_on_a_tcp_listener_serves_nbdcopy_over_tcp()
    {
        const long size = 8 * MiB;
        string source = _scratch.Image("source.img", size);
        Scratch.FillRandom(source, 0, size, seed: 8);
        string image = _scratch.Image("export.img", size);
        using var device = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite);
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        var server = NbdServer.Start(listener, new NbdExport(device));
        try
        {
            int port = ((System.Net.IPEndPoint)server.LocalEndPoint!).Port;
            Tool.Check("nbdcopy", "--flush", source, $"nbd://127.0.0.1:{port}");
            Scratch.AssertSameBytes(source, 0, image, 0, size);
        }
        finally
        {
            await server.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        Assert.Equal(0, server.GetStatistics().FailedConnections);
    }

    [Fact]
    public void A_mirror_served_over_nbd_advertises_its_region_size_and_gets_the_data_on_every_leg()
    {
        const long size = 32 * MiB;
        string source = _scratch.Image("source.img", size);
        Scratch.FillRandom(source, 0, size, seed: 7);
        var legs = new[] { _scratch.Loop("leg0.img", size), _scratch.Loop("leg1.img", size) };
        var mirror = new MirrorDevice(legs.Select(l => LinuxBlockDevice.Open(l, DeviceOpenOptions.ReadWrite)).ToArray(),
            new MirrorOptions { NoSync = true, RegionSizeBytes = 256 * 1024, RequestPoolSize = 8, OwnsLegs = true });
        using var served = Served.Start(_scratch, mirror);

        var export = JsonDocument.Parse(Tool.Check("nbdinfo", "--json", served.Uri)).RootElement.GetProperty("exports")[0];
        Assert.Equal(256 * 1024, export.GetProperty("block_size_preferred").GetInt32());
        Assert.True(export.GetProperty("can_multi_conn").GetBoolean());
        // Requests of 1 MiB span four regions each, and more are in flight than the mirror's pool holds.
        Tool.Check("nbdcopy", "--connections=2", "--threads=2", "--requests=16", "--request-size=1048576", "--flush", source, served.Uri);
        foreach (string leg in legs) Scratch.AssertSameBytes(source, 0, leg, 0, size);
        string copy = _scratch.Image("copy.img", size);
        Tool.Check("nbdcopy", served.Uri, copy);
        Scratch.AssertSameBytes(source, 0, copy, 0, size);
        Assert.Equal(0, served.Server.GetStatistics().RequestErrors);
    }

    [Fact]
    public void A_read_only_export_is_advertised_read_only_and_qemu_cannot_write_to_it()
    {
        const long size = 8 * MiB;
        string image = _scratch.Image("export.img", size);
        Scratch.FillRandom(image, 0, size, seed: 6);
        string before = Scratch.Sha256(image, 0, size);
        using var served = Served.Start(_scratch, LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite),
            device => new NbdExport(device) { ReadOnly = true });

        var export = JsonDocument.Parse(Tool.Check("nbdinfo", "--json", served.Uri)).RootElement.GetProperty("exports")[0];
        Assert.True(export.GetProperty("is_read_only").GetBoolean());
        Assert.False(export.GetProperty("can_trim").GetBoolean());
        Assert.False(export.GetProperty("can_zero").GetBoolean());
        var (exit, _, _) = Tool.Run("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k", served.Uri);
        Assert.NotEqual(0, exit);
        Assert.Equal(before, Scratch.Sha256(image, 0, size));
    }

    /// <summary>An export served on a Unix socket in the scratch folder; disposing stops the server, then closes the device.</summary>
    internal sealed class Served : IDisposable
    {
        private static readonly TimeSpan StopBound = TimeSpan.FromSeconds(30);

        private Served(NbdServer server, IBlockDevice device, string? socketPath, StringWriter log)
        {
            Server = server;
            Device = device;
            SocketPath = socketPath;
            Log = log;
        }

        public NbdServer Server { get; }

        public IBlockDevice Device { get; }

        /// <summary>The Unix socket; null when served on TCP.</summary>
        public string? SocketPath { get; }

        /// <summary>The TCP port on 127.0.0.1; 0 when served on a Unix socket.</summary>
        public int Port => SocketPath == null ? ((System.Net.IPEndPoint)Server.LocalEndPoint!).Port : 0;

        /// <summary>What the server logged: one line per failed connection.</summary>
        public StringWriter Log { get; }

        /// <summary>The export's URI: nbds when the export requires TLS, with <paramref name="certificates"/> as tls-certificates.</summary>
        public string UriWith(string? certificates, string host = "127.0.0.1")
        {
            string scheme = Server.Export.Tls != null ? "nbds" : "nbd";
            string tls = certificates == null ? "" : $"tls-certificates={certificates}";
            return SocketPath != null
                ? $"{scheme}+unix:///{Server.Export.Name}?socket={SocketPath}{(tls.Length > 0 ? "&" + tls : "")}"
                : $"{scheme}://{host}:{Port}/{Server.Export.Name}{(tls.Length > 0 ? "?" + tls : "")}";
        }

        public string Uri => UriWith(null);

        public static Served Start(Scratch scratch, IBlockDevice device, Func<IBlockDevice, NbdExport>? export = null,
            NbdServerOptions? options = null)
        {
            string path = Path.Combine(scratch.Folder, $"nbd-{Guid.NewGuid():N}"[..16] + ".sock");
            var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            return Start(listener, new UnixDomainSocketEndPoint(path), path, device, export, options);
        }

        /// <summary>Served on a free port of 127.0.0.1.</summary>
        public static Served StartTcp(IBlockDevice device, Func<IBlockDevice, NbdExport>? export = null, NbdServerOptions? options = null)
        {
            var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            return Start(listener, new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0), null, device, export, options);
        }

        private static Served Start(Socket listener, System.Net.EndPoint endPoint, string? path, IBlockDevice device,
            Func<IBlockDevice, NbdExport>? export, NbdServerOptions? options)
        {
            try
            {
                listener.Bind(endPoint);
                var log = new StringWriter();
                var server = NbdServer.Start(listener, (export ?? (d => new NbdExport(d)))(device), options ?? new NbdServerOptions(), log);
                return new Served(server, device, path, log);
            }
            catch
            {
                listener.Dispose();
                device.Dispose();
                throw;
            }
        }

        public Socket Connect()
        {
            if (SocketPath == null)
            {
                var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                tcp.Connect(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, Port));
                return tcp;
            }
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(SocketPath));
            return socket;
        }

        public void Dispose()
        {
            try
            {
                Assert.True(Server.StopAsync().Wait(StopBound), $"The server did not stop within {StopBound}.");
                Assert.Equal(0, Server.ConnectionCount);
            }
            finally
            {
                Device.Dispose();
                if (SocketPath != null) File.Delete(SocketPath);
            }
        }
    }

    /// <summary>Runs the NBD client tools, each bounded so a hung client fails its test instead of the run.</summary>
    internal static class Tool
    {
        private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);

        public static string Check(string file, params string[] args)
        {
            var (exit, output, error) = Run(file, args);
            Assert.True(exit == 0, $"{file} {string.Join(' ', args)} failed ({exit}): {error}{output}");
            return output;
        }

        public static (int Exit, string Output, string Error) Run(string file, params string[] args)
        {
            var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string arg in args) start.ArgumentList.Add(arg);
            using var process = Process.Start(start)!;
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(Bound))
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                Assert.Fail($"{file} {string.Join(' ', args)} did not end within {Bound}.");
            }
            process.WaitForExit();
            return (process.ExitCode, output.Result, error.Result);
        }
    }
}
