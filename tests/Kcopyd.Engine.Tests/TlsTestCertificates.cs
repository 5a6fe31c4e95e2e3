using Kcopyd.Engine.Nbd;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// A CA of its own and the server and client certificates it signs, made by openssl (not by the code under test) in
/// the directory layout nbdkit, qemu and libnbd share. Nothing one instance signs leads to another instance's CA.
/// The server certificate is for localhost and 127.0.0.1.
/// </summary>
public sealed class TlsTestCertificates
{
    private readonly Scratch _scratch;
    private readonly string _ca;

    private TlsTestCertificates(Scratch scratch, string name)
    {
        _scratch = scratch;
        Name = name;
        _ca = Path.Combine(scratch.Folder, $"{name}-ca");
        Directory = Path.Combine(scratch.Folder, $"{name}-pki");
        System.IO.Directory.CreateDirectory(_ca, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        System.IO.Directory.CreateDirectory(Directory);
    }

    public string Name { get; }

    /// <summary>Everything: ca-cert.pem, server-cert.pem and server-key.pem, client-cert.pem and client-key.pem.</summary>
    public string Directory { get; }

    public static TlsTestCertificates Create(Scratch scratch, string name)
    {
        var set = new TlsTestCertificates(scratch, name);
        string caKey = Path.Combine(set._ca, "ca-key.pem");
        string caCert = Path.Combine(set.Directory, NbdTlsCertificates.AuthorityFile);
        NbdServerTests.Tool.Check("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", caKey, "-out", caCert, "-days", "2", "-subj", $"/CN=Kcopyd test CA {name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        set.Sign("server", "localhost", "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n", caCert, caKey, serial: 2);
        set.Sign("client", $"client of {name}", "extendedKeyUsage=clientAuth\n", caCert, caKey, serial: 3);
        return set;
    }

    /// <summary>A client's directory: this CA, and this CA's client certificate unless <paramref name="withCertificate"/> is false.</summary>
    public string ClientDirectory(bool withCertificate = true)
    {
        string files = withCertificate ? "client" : "client-without";
        return Compose(files, (NbdTlsCertificates.AuthorityFile, this),
            withCertificate ? (NbdTlsCertificates.ClientCertificateFile, this) : default,
            withCertificate ? (NbdTlsCertificates.ClientKeyFile, this) : default);
    }

    /// <summary>A client that trusts this CA but shows a certificate <paramref name="other"/>'s CA signed.</summary>
    public string ClientDirectoryWithCertificateOf(TlsTestCertificates other)
        => Compose($"client-of-{other.Name}", (NbdTlsCertificates.AuthorityFile, this),
            (NbdTlsCertificates.ClientCertificateFile, other), (NbdTlsCertificates.ClientKeyFile, other));

    /// <summary>A directory of the given files, each from the set named beside it, keys 0600.</summary>
    private string Compose(string name, params (string File, TlsTestCertificates? From)[] files)
    {
        string folder = Path.Combine(_scratch.Folder, $"{Name}-{name}-{Guid.NewGuid():N}"[..40]);
        System.IO.Directory.CreateDirectory(folder);
        foreach (var (file, from) in files.Where(f => f.From != null))
        {
            string target = Path.Combine(folder, file);
            File.Copy(Path.Combine(from!.Directory, file), target);
            if (file.EndsWith("-key.pem", StringComparison.Ordinal)) File.SetUnixFileMode(target, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
        return folder;
    }

    private void Sign(string role, string commonName, string extensions, string caCert, string caKey, int serial)
    {
        string key = Path.Combine(Directory, $"{role}-key.pem");
        string request = Path.Combine(_ca, $"{role}.csr");
        string extensionFile = Path.Combine(_ca, $"{role}.ext");
        File.WriteAllText(extensionFile, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + extensions);
        NbdServerTests.Tool.Check("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", request, "-subj", $"/CN={commonName}");
        NbdServerTests.Tool.Check("openssl", "x509", "-req", "-in", request, "-CA", caCert, "-CAkey", caKey, "-set_serial", serial.ToString(),
            "-days", "2", "-extfile", extensionFile, "-out", Path.Combine(Directory, $"{role}-cert.pem"));
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }
}
