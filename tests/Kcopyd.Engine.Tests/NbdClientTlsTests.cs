using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Nbd;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// The NBD client over TLS (nbds, nbds+unix) against servers that require it: nbdkit --tls=require, qemu-nbd
/// --tls-creds and the engine's own server; each refusal has its ErrorId and says why.
/// </summary>
public sealed class NbdClientTlsTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(120);
    private readonly Scratch _scratch = new();
    private readonly TlsTestCertificates _pki;

    public NbdClientTlsTests() => _pki = TlsTestCertificates.Create(_scratch, "a");

    public void Dispose() => _scratch.Dispose();

    private ExternalNbdServer NbdkitTls(bool tcp, params string[] more)
    {
        string[] arguments = ["--tls=require", $"--tls-certificates={_pki.Directory}", .. more];
        return _scratch.Track(tcp ? ExternalNbdServer.NbdkitTcp(_scratch, arguments) : ExternalNbdServer.Nbdkit(_scratch, arguments));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_copy_into_nbdkit_requiring_TLS_and_back_out_gives_the_source_bytes(bool tcp)
    {
        const long size = 32 * MiB;
        // --tls-verify-peer: the client's certificate is checked too, so this copy shows it was sent.
        var nbdkit = NbdkitTls(tcp, "--tls-verify-peer", "memory", $"{size}");
        CopyThrough(nbdkit.TlsUri(_pki.ClientDirectory()), size, seed: 601);
    }

    [Fact]
    public void A_copy_into_qemu_nbd_with_tls_creds_and_back_out_gives_the_source_bytes()
    {
        const long size = 16 * MiB;
        string backing = _scratch.Image("qemu.img", size);
        // qemu's server endpoint verifies the client's certificate unless told not to.
        var qemu = _scratch.Track(ExternalNbdServer.QemuNbd(_scratch, backing, null,
            "--object", $"tls-creds-x509,id=tls0,endpoint=server,dir={_pki.Directory}", "--tls-creds", "tls0"));
        string source = CopyThrough(qemu.TlsUri(_pki.ClientDirectory()), size, seed: 602);
        Assert.Equal(Scratch.Sha256(source, 0, size), Scratch.Sha256(backing, 0, size));
    }

    [Fact]
    public void A_copy_through_the_engines_own_server_requiring_TLS_and_client_certificates_gives_the_source_bytes()
    {
        const long size = 16 * MiB;
        string image = _scratch.Image("export.img", size);
        using var served = NbdServerTests.Served.StartTcp(LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite),
            d => new NbdExport(d) { Tls = NbdServerTls.FromDirectory(_pki.Directory, verifyClients: true) });
        string source = CopyThrough(served.UriWith(_pki.ClientDirectory()), size, seed: 603);
        Assert.Equal(Scratch.Sha256(source, 0, size), Scratch.Sha256(image, 0, size));
        Assert.Equal(0, served.Server.GetStatistics().FailedConnections);
    }

    [Fact]
    public void A_server_certificate_another_CA_signed_is_refused_over_TCP_and_over_a_Unix_socket()
    {
        var other = TlsTestCertificates.Create(_scratch, "b");
        string trusting = other.ClientDirectory();
        foreach (bool tcp in new[] { true, false })
        {
            var nbdkit = NbdkitTls(tcp, "memory", "1M");
            var error = Assert.Throws<KcopydException>(() => NbdDevice.Open(nbdkit.TlsUri(trusting), DeviceOpenOptions.ReadOnly));
            Assert.Equal("NbdTlsHandshakeFailed", error.ErrorId);
            Assert.Contains("does not lead to a trusted CA", error.Message);
            Assert.Contains(Path.Combine(trusting, NbdTlsCertificates.AuthorityFile), error.Message); // names the CA it trusted
            // tls-verify-peer=false checks nothing, as libnbd's does: the connection is encrypted, not authenticated.
            using var unverified = NbdDevice.Open(nbdkit.TlsUri(trusting, "&tls-verify-peer=false"), DeviceOpenOptions.ReadOnly);
            Assert.Equal(MiB, unverified.SizeBytes);
        }
    }

    [Fact]
    public void The_host_name_is_checked_over_TCP_and_over_a_Unix_socket_only_when_tls_hostname_names_one()
    {
        var tcp = NbdkitTls(tcp: true, "memory", "1M");
        using (var byAddress = NbdDevice.Open(tcp.TlsUri(_pki.ClientDirectory()), DeviceOpenOptions.ReadOnly)) // 127.0.0.1 is in the certificate
            Assert.Equal(MiB, byAddress.SizeBytes);
        var misnamed = Assert.Throws<KcopydException>(() => NbdDevice.Open(tcp.TlsUri(_pki.ClientDirectory(), "&tls-hostname=elsewhere.example"), DeviceOpenOptions.ReadOnly));
        Assert.Equal("NbdTlsHandshakeFailed", misnamed.ErrorId);
        Assert.Contains("'elsewhere.example'", misnamed.Message);

        var unix = NbdkitTls(tcp: false, "memory", "1M");
        using (var noName = NbdDevice.Open(unix.TlsUri(_pki.ClientDirectory()), DeviceOpenOptions.ReadOnly))
            Assert.Equal(MiB, noName.SizeBytes);
        using (var named = NbdDevice.Open(unix.TlsUri(_pki.ClientDirectory(), "&tls-hostname=localhost"), DeviceOpenOptions.ReadOnly))
            Assert.Equal(MiB, named.SizeBytes);
        var wrong = Assert.Throws<KcopydException>(() => NbdDevice.Open(unix.TlsUri(_pki.ClientDirectory(), "&tls-hostname=elsewhere.example"), DeviceOpenOptions.ReadOnly));
        Assert.Equal("NbdTlsHandshakeFailed", wrong.ErrorId);
    }

    [Fact]
    public void A_server_that_verifies_clients_refuses_one_without_a_certificate_or_with_another_CAs()
    {
        var other = TlsTestCertificates.Create(_scratch, "b");
        var nbdkit = NbdkitTls(tcp: false, "--tls-verify-peer", "memory", "1M");

        var none = Assert.Throws<KcopydException>(() => NbdDevice.Open(nbdkit.TlsUri(_pki.ClientDirectory(withCertificate: false)), DeviceOpenOptions.ReadOnly));
        Assert.Equal("NbdTlsHandshakeFailed", none.ErrorId);
        Assert.Contains("client-cert.pem", none.Message);
        var foreign = Assert.Throws<KcopydException>(() => NbdDevice.Open(nbdkit.TlsUri(_pki.ClientDirectoryWithCertificateOf(other)), DeviceOpenOptions.ReadOnly));
        Assert.Equal("NbdTlsHandshakeFailed", foreign.ErrorId);
        Assert.Contains("certificate", nbdkit.Output);

        using var admitted = NbdDevice.Open(nbdkit.TlsUri(_pki.ClientDirectory()), DeviceOpenOptions.ReadOnly);
        Assert.Equal(MiB, admitted.SizeBytes);
    }

    [Fact]
    public void An_nbds_URI_against_a_server_without_TLS_fails_before_naming_the_export_and_an_nbd_URI_against_one_requiring_it_says_so()
    {
        var plain = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "memory", "1M"));
        var notOffered = Assert.Throws<KcopydException>(() => NbdDevice.Open(plain.TlsUri(_pki.ClientDirectory()), DeviceOpenOptions.ReadOnly));
        Assert.Equal("NbdTlsNotOffered", notOffered.ErrorId);

        string image = _scratch.Image("plain.img", MiB);
        using (var ours = NbdServerTests.Served.Start(_scratch, LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite)))
        {
            var refused = Assert.Throws<KcopydException>(() => NbdDevice.Open(ours.Uri.Replace("nbd+unix", "nbds+unix") + $"&tls-certificates={_pki.ClientDirectory()}", DeviceOpenOptions.ReadOnly));
            Assert.Equal("NbdTlsNotOffered", refused.ErrorId);
            Assert.Contains("NBD_OPT_STARTTLS", refused.Message);
        }

        var requiring = NbdkitTls(tcp: false, "memory", "1M");
        var required = Assert.Throws<KcopydException>(() => NbdDevice.Open(requiring.Uri, DeviceOpenOptions.ReadOnly));
        Assert.Equal("NbdTlsRequired", required.ErrorId);
        Assert.Equal(KcopydErrorKind.PermissionDenied, required.Kind);
    }

    [Fact]
    public void A_certificate_directory_that_will_not_do_is_refused_before_connecting_each_way_with_its_ErrorId()
    {
        // No server at all: each of these must fail on the directory, not on the connection.
        string socket = Path.Combine(_scratch.Folder, "nobody.sock");
        string Uri(string directory, string more = "") => $"nbds+unix:///?socket={socket}&tls-certificates={directory}{more}";
        KcopydException Fails(string uri) => Assert.Throws<KcopydException>(() => NbdDevice.Open(uri, DeviceOpenOptions.ReadOnly));

        Assert.Equal("TlsCertificatesNotFound", Fails(Uri(Path.Combine(_scratch.Folder, "missing"))).ErrorId);
        string noCa = _pki.ClientDirectory();
        File.Delete(Path.Combine(noCa, NbdTlsCertificates.AuthorityFile));
        var missingCa = Fails(Uri(noCa));
        Assert.Equal("TlsCertificatesNotFound", missingCa.ErrorId);
        Assert.Contains("ca-cert.pem", missingCa.Message);

        string readable = _pki.ClientDirectory();
        File.SetUnixFileMode(Path.Combine(readable, NbdTlsCertificates.ClientKeyFile), (UnixFileMode)0b110_100_100);
        var exposed = Fails(Uri(readable));
        Assert.Equal("TlsKeyReadableByOthers", exposed.ErrorId);
        Assert.Equal(KcopydErrorKind.PermissionDenied, exposed.Kind);

        string withCrl = _pki.ClientDirectory();
        File.WriteAllText(Path.Combine(withCrl, NbdTlsCertificates.RevocationListFile), "");
        Assert.Equal("TlsRevocationListUnsupported", Fails(Uri(withCrl)).ErrorId);

        string garbled = _pki.ClientDirectory();
        File.WriteAllText(Path.Combine(garbled, NbdTlsCertificates.AuthorityFile), "not a certificate\n");
        Assert.Equal("TlsCertificateInvalid", Fails(Uri(garbled)).ErrorId);

        string keyOnly = _pki.ClientDirectory();
        File.Delete(Path.Combine(keyOnly, NbdTlsCertificates.ClientCertificateFile));
        Assert.Equal("TlsCertificatesNotFound", Fails(Uri(keyOnly)).ErrorId);

        var psk = Fails($"nbds+unix:///?socket={socket}&tls-psk-file={Path.Combine(_scratch.Folder, "keys.psk")}");
        Assert.Equal("NbdTlsPskUnsupported", psk.ErrorId);
        Assert.Contains("PSK", psk.Message);
    }

    /// <summary>Copies random data into the export and back out with the engine; returns the source image.</summary>
    private string CopyThrough(string uri, long size, int seed)
    {
        string source = _scratch.Image($"src-{seed}.img", size);
        string back = _scratch.Image($"back-{seed}.img", size);
        Scratch.FillRandom(source, 0, size, seed);
        using var client = new CopyClient(new CopyClientOptions { Name = "nbd-tls-copy" });
        using (var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly))
        using (var export = NbdDevice.Open(uri, DeviceOpenOptions.ReadWrite))
        {
            Assert.True(export.Uri.Tls != null);
            Copy(client, from, export, size);
        }
        using (var export = NbdDevice.Open(uri, DeviceOpenOptions.ReadOnly))
        using (var to = LinuxBlockDevice.Open(back, DeviceOpenOptions.ReadWrite))
            Copy(client, export, to, size);
        Assert.Equal(Scratch.Sha256(source, 0, size), Scratch.Sha256(back, 0, size));
        return source;
    }

    private static void Copy(CopyClient client, IBlockDevice from, IBlockDevice to, long length)
    {
        var job = client.Copy(new CopyRequest { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = length });
        Assert.True(job.Wait(Bounded), $"the copy {from.Name} -> {to.Name} did not end");
        Assert.True(job.State == CopyJobState.Completed, $"the copy {from.Name} -> {to.Name} ended {job.State}: {job.Error}");
        Assert.Equal(length, job.BytesCopied);
    }
}
