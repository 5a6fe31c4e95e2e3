using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Kcopyd.Engine.Nbd;

/// <summary>
/// The certificate directory nbdkit (--tls-certificates), qemu (tls-creds-x509 dir=) and libnbd (tls-certificates=)
/// share: ca-cert.pem, server-cert.pem with server-key.pem, client-cert.pem with client-key.pem, all PEM.
/// </summary>
/// <remarks>
/// A private key that everyone may read is refused: whoever read it can be this server (or client). A revocation list
/// (ca-crl.pem) is refused too, because .NET has no way to check a certificate against a local one, and ignoring it
/// would accept the very certificates it revokes.
/// </remarks>
public static class NbdTlsCertificates
{
    public const string AuthorityFile = "ca-cert.pem";
    public const string ServerCertificateFile = "server-cert.pem";
    public const string ServerKeyFile = "server-key.pem";
    public const string ClientCertificateFile = "client-cert.pem";
    public const string ClientKeyFile = "client-key.pem";
    public const string RevocationListFile = "ca-crl.pem";

    /// <summary>The directory's CA certificates; null when it has no ca-cert.pem.</summary>
    internal static X509Certificate2Collection? TryLoadAuthorities(string directory)
    {
        string path = Path.Combine(directory, AuthorityFile);
        if (!File.Exists(path)) return null;
        var authorities = new X509Certificate2Collection();
        try
        {
            authorities.ImportFromPemFile(path);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw Invalid(path, $"'{path}' cannot be read as PEM certificates: {e.Message}", e);
        }
        if (authorities.Count == 0) throw Invalid(path, $"'{path}' holds no certificate.");
        return authorities;
    }

    internal static X509Certificate2Collection LoadAuthorities(string directory, string why)
        => TryLoadAuthorities(directory) ?? throw NotFound(Path.Combine(directory, AuthorityFile), $"'{directory}' has no {AuthorityFile}, {why}.");

    /// <summary>A certificate with its private key, and the intermediates that follow it in the certificate file.</summary>
    internal static (X509Certificate2 Certificate, X509Certificate2Collection Intermediates) LoadIdentity(string directory, string certificateFile, string keyFile)
    {
        string certificatePath = Path.Combine(directory, certificateFile);
        string keyPath = Path.Combine(directory, keyFile);
        foreach (string path in new[] { certificatePath, keyPath })
            if (!File.Exists(path)) throw NotFound(path, $"'{directory}' has no {Path.GetFileName(path)}.");
        CheckKeyIsPrivate(keyPath);
        X509Certificate2 certificate;
        var all = new X509Certificate2Collection();
        try
        {
            certificate = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
            all.ImportFromPemFile(certificatePath);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw Invalid(certificatePath, $"'{certificatePath}' and '{keyPath}' are not a PEM certificate and its private key: {e.Message}", e);
        }
        var intermediates = new X509Certificate2Collection();
        foreach (var other in all.Skip(1)) intermediates.Add(other);
        return (certificate, intermediates);
    }

    /// <summary>The directory exists and holds no revocation list this code would have to ignore.</summary>
    internal static void CheckDirectory(string directory)
    {
        if (File.Exists(directory))
            throw NotFound(directory, $"'{directory}' is a file, not a certificate directory. (A TLS-PSK key file is no use here: Kcopyd offers TLS with X.509 certificates only, as .NET's TLS has no PSK.)");
        if (!Directory.Exists(directory)) throw NotFound(directory, $"There is no certificate directory '{directory}'.");
        string crl = Path.Combine(directory, RevocationListFile);
        if (File.Exists(crl))
            throw new KcopydException("TlsRevocationListUnsupported", KcopydErrorKind.InvalidArgument,
                $"'{crl}' is a certificate revocation list, which Kcopyd cannot check (.NET has no way to use a local one): remove it from the directory and revoke by replacing the CA, or use another directory.", crl);
    }

    private static void CheckKeyIsPrivate(string keyPath)
    {
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(keyPath) & UnixFileMode.OtherRead) != 0)
            throw new KcopydException("TlsKeyReadableByOthers", KcopydErrorKind.PermissionDenied,
                $"The private key '{keyPath}' may be read by every user, so anyone here could pose as its owner: chmod o-r (0600 or 0640) it first.", keyPath);
    }

    private static KcopydException NotFound(string path, string message) => new("TlsCertificatesNotFound", KcopydErrorKind.NotFound, message, path);

    private static KcopydException Invalid(string path, string message, Exception? inner = null)
        => new("TlsCertificateInvalid", KcopydErrorKind.InvalidArgument, message, path, inner);
}
