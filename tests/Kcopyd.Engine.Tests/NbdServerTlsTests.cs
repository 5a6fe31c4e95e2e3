using System.Diagnostics;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Nbd;
using static Kcopyd.Engine.Nbd.NbdProtocol;
using Tool = Kcopyd.Engine.Tests.NbdServerTests.Tool;
using Wire = Kcopyd.Engine.Tests.NbdServerWireTests.Wire;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// The NBD server requiring TLS, as real clients meet it: nbdinfo and nbdcopy (libnbd, tls-certificates=), qemu-img and
/// qemu-io (tls-creds-x509), and a client of the test's own that does not start TLS, or starts it and stops.
/// </summary>
public sealed class NbdServerTlsTests : IDisposable
{
    private const long MiB = 1 << 20;
    private readonly Scratch _scratch = new();
    private readonly TlsTestCertificates _pki;

    public NbdServerTlsTests() => _pki = TlsTestCertificates.Create(_scratch, "a");

    public void Dispose() => _scratch.Dispose();

    private NbdServerTests.Served Serve(string image, bool tcp = false, bool verifyClients = false, NbdServerOptions? options = null)
    {
        var tls = NbdServerTls.FromDirectory(_pki.Directory, verifyClients);
        var device = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite);
        NbdExport Export(IBlockDevice d) => new(d) { Name = "disk", Tls = tls };
        return tcp ? NbdServerTests.Served.StartTcp(device, Export, options) : NbdServerTests.Served.Start(_scratch, device, Export, options);
    }

    [Fact]
    public void Nbdcopy_writes_and_reads_a_TLS_export_over_a_Unix_socket_and_nbdinfo_over_TCP_checks_its_name()
    {
        const long size = 32 * MiB;
        string source = _scratch.Image("source.img", size);
        Scratch.FillRandom(source, 0, size, seed: 501);
        string image = _scratch.Image("export.img", size);
        string back = _scratch.Image("back.img", size);
        using var served = Serve(image, verifyClients: true);
        string uri = served.UriWith(_pki.ClientDirectory());
        Assert.StartsWith("nbds+unix:///disk?socket=", uri);

        Tool.Check("nbdcopy", "--flush", source, uri);
        Assert.Equal(Scratch.Sha256(source, 0, size), Scratch.Sha256(image, 0, size));
        Tool.Check("nbdcopy", uri, back);
        Assert.Equal(Scratch.Sha256(source, 0, size), Scratch.Sha256(back, 0, size));
        Assert.Equal(0, served.Server.GetStatistics().FailedConnections);

        using var tcp = Serve(back, tcp: true, verifyClients: true);
        string info = Tool.Check("nbdinfo", "--size", tcp.UriWith(_pki.ClientDirectory(), host: "localhost"));
        Assert.Equal(size.ToString(), info.Trim());
    }

    [Fact]
    public void Qemu_img_and_qemu_io_read_and_write_through_tls_creds_x509()
    {
        const long size = 16 * MiB;
        string image = _scratch.Image("export.img", size);
        Scratch.FillRandom(image, 0, size, seed: 502);
        string expected = Scratch.Sha256(image, 0, size);
        using var served = Serve(image, tcp: true, verifyClients: true);
        string credentials = $"tls-creds-x509,id=tls0,endpoint=client,dir={_pki.ClientDirectory()}";
        string target = $"driver=nbd,server.type=inet,server.host=localhost,server.port={served.Port},export=disk,tls-creds=tls0";

        string converted = Path.Combine(_scratch.Folder, "converted.img");
        Tool.Check("qemu-img", "convert", "--object", credentials, "--image-opts", target, "-O", "raw", converted);
        Assert.Equal(expected, Scratch.Sha256(converted, 0, size));

        Tool.Check("qemu-io", "--object", credentials, "--image-opts", target, "-c", "write -P 0xab 0 1M", "-c", "write -f -P 0xcd 4M 64k");
        string verified = Tool.Check("qemu-io", "--object", credentials, "--image-opts", target, "-c", "read -P 0xab 0 1M", "-c", "read -P 0xcd 4M 64k");
        Assert.DoesNotContain("Pattern verification failed", verified);
        Assert.All(Scratch.Read(image, 0, MiB), b => Assert.Equal(0xab, b));
        Assert.All(Scratch.Read(image, 4 * MiB, 64 * 1024), b => Assert.Equal(0xcd, b));
        Assert.Equal(Scratch.Sha256(converted, MiB, 3 * MiB), Scratch.Sha256(image, MiB, 3 * MiB));
    }

    [Fact]
    public void A_client_whose_certificate_another_CA_signed_or_that_has_none_is_refused_and_the_next_is_served()
    {
        string image = _scratch.Image("export.img", 8 * MiB);
        var other = TlsTestCertificates.Create(_scratch, "b");
        using var served = Serve(image, tcp: true, verifyClients: true);

        var (exit, _, error) = Tool.Run("nbdinfo", "--size", served.UriWith(_pki.ClientDirectoryWithCertificateOf(other), host: "localhost"));
        Assert.NotEqual(0, exit);
        (exit, _, error) = Tool.Run("nbdinfo", "--size", served.UriWith(_pki.ClientDirectory(withCertificate: false), host: "localhost"));
        Assert.NotEqual(0, exit);
        Assert.Contains("client's certificate was refused", served.Log.ToString());

        Assert.Equal((8 * MiB).ToString(), Tool.Check("nbdinfo", "--size", served.UriWith(_pki.ClientDirectory(), host: "localhost")).Trim());
        Assert.True(SpinWait.SpinUntil(() => served.Server.ConnectionCount == 0, 10_000));
    }

    [Fact]
    public void A_client_that_does_not_trust_the_servers_CA_or_asks_for_another_name_hangs_up()
    {
        string image = _scratch.Image("export.img", 8 * MiB);
        var other = TlsTestCertificates.Create(_scratch, "b");
        using var served = Serve(image, tcp: true);

        var (exit, _, error) = Tool.Run("nbdinfo", "--size", served.UriWith(other.ClientDirectory(), host: "localhost"));
        Assert.NotEqual(0, exit);
        Assert.Contains("certificate", error, StringComparison.OrdinalIgnoreCase);
        // Ours as well: the other CA, and this CA but a name the certificate does not carry.
        var untrusted = Assert.Throws<KcopydException>(() => NbdDevice.Open(served.UriWith(other.ClientDirectory()), DeviceOpenOptions.ReadOnly));
        Assert.Equal("NbdTlsHandshakeFailed", untrusted.ErrorId);
        Assert.Contains("does not lead to a trusted CA", untrusted.Message);
        var misnamed = Assert.Throws<KcopydException>(() =>
            NbdDevice.Open(served.UriWith(_pki.ClientDirectory()) + "&tls-hostname=elsewhere.example", DeviceOpenOptions.ReadOnly));
        Assert.Equal("NbdTlsHandshakeFailed", misnamed.ErrorId);
        Assert.Contains("not for the host name", misnamed.Message);

        Assert.Equal((8 * MiB).ToString(), Tool.Check("nbdinfo", "--size", served.UriWith(_pki.ClientDirectory(), host: "localhost")).Trim());
    }

    [Fact]
    public void A_plain_client_meets_TLS_REQD_and_the_server_stays_up_for_the_next()
    {
        string image = _scratch.Image("export.img", 8 * MiB);
        Scratch.FillRandom(image, 0, 8 * MiB, seed: 503);
        using var served = Serve(image);

        var (exit, _, error) = Tool.Run("nbdinfo", "--size", served.Uri.Replace("nbds+unix", "nbd+unix"));
        Assert.NotEqual(0, exit);
        Assert.Contains("requires TLS", error);
        var plain = Assert.Throws<KcopydException>(() => NbdDevice.Open(served.Uri.Replace("nbds+unix", "nbd+unix"), DeviceOpenOptions.ReadOnly));
        Assert.Equal("NbdTlsRequired", plain.ErrorId);
        Assert.Contains("nbds", plain.Message);

        // On the wire: every option but STARTTLS is refused with TLS_REQD, STARTTLS with data is invalid, and
        // NBD_OPT_EXPORT_NAME, which cannot be refused, ends the connection.
        using (var wire = Wire.Open(served))
        {
            wire.Greet(ClientFlagFixedNewstyle | ClientFlagNoZeroes);
            foreach (uint option in new[] { OptList, OptStructuredReply, OptInfo, OptGo, 12345u })
            {
                wire.SendOption(option, option is OptInfo or OptGo ? Wire.InfoRequest("disk") : []);
                var reply = wire.ReadOptionReply();
                Assert.Equal((option, RepErrTlsReqd), (reply.Option, reply.Type));
            }
            wire.SendOption(OptStartTls, [1]);
            Assert.Equal(RepErrInvalid, wire.ReadOptionReply().Type);
            wire.SendOption(OptExportName, "disk"u8.ToArray());
            Assert.True(wire.ClosedByServer(TimeSpan.FromSeconds(10)), "NBD_OPT_EXPORT_NAME without TLS was not refused");
        }

        // And the export is still there for a client with TLS, with the same bytes.
        using var export = NbdDevice.Open(served.UriWith(_pki.ClientDirectory()), DeviceOpenOptions.ReadOnly);
        Assert.Equal(8 * MiB, export.SizeBytes);
        string copy = _scratch.Image("copy.img", 8 * MiB);
        Tool.Check("nbdcopy", served.UriWith(_pki.ClientDirectory()), copy);
        Assert.Equal(Scratch.Sha256(image, 0, 8 * MiB), Scratch.Sha256(copy, 0, 8 * MiB));
    }

    [Fact]
    public void A_client_that_never_finishes_the_TLS_handshake_loses_its_slot_at_the_handshake_timeout()
    {
        string image = _scratch.Image("export.img", 8 * MiB);
        var options = new NbdServerOptions { HandshakeTimeout = TimeSpan.FromSeconds(1), MaxConnections = 1 };
        using var served = Serve(image, options: options);

        using (var stalled = Wire.Open(served))
        {
            stalled.Greet(ClientFlagFixedNewstyle | ClientFlagNoZeroes);
            stalled.SendOption(OptStartTls, []);
            Assert.Equal(RepAck, stalled.ReadOptionReply().Type);
            // It sends no ClientHello: the only connection the server takes is held until the timeout frees it.
            var clock = Stopwatch.StartNew();
            Assert.True(stalled.ClosedByServer(TimeSpan.FromSeconds(15)), "the stalled TLS handshake was never dropped");
            Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.5), TimeSpan.FromSeconds(10));
        }
        Assert.True(SpinWait.SpinUntil(() => served.Server.ConnectionCount == 0, 10_000));
        Assert.Contains("handshake timeout", served.Log.ToString());

        using (var garbage = Wire.Open(served))
        {
            garbage.Greet(ClientFlagFixedNewstyle | ClientFlagNoZeroes);
            garbage.SendOption(OptStartTls, []);
            Assert.Equal(RepAck, garbage.ReadOptionReply().Type);
            garbage.SendRaw(new byte[64]); // not a ClientHello
            Assert.True(garbage.ClosedByServer(TimeSpan.FromSeconds(10)), "a TLS handshake of garbage was not ended");
        }
        Assert.True(SpinWait.SpinUntil(() => served.Server.ConnectionCount == 0, 10_000));

        using var export = NbdDevice.Open(served.UriWith(_pki.ClientDirectory()), DeviceOpenOptions.ReadOnly);
        Assert.Equal(8 * MiB, export.SizeBytes);
    }
}
