using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Kcopyd.Engine.Nbd;

/// <summary>
/// What an nbds URI's client shows and checks: the CA the server's certificate must lead to, the host name it must
/// carry, and the client's own certificate if the directory has one. Read when the device opens.
/// </summary>
/// <remarks>
/// The host name is the URI's host for TCP, and tls-hostname when given. A Unix socket has no host: the certificate
/// must still lead to the CA, but its name is checked only against tls-hostname. libnbd verifies only with a host
/// name, so over a Unix socket it accepts any certificate unless tls-hostname (libnbd 1.22) gives one; checking the
/// chain is the stricter of the two, and a server a libnbd client trusts by its CA passes it.
/// </remarks>
internal sealed class NbdClientTls
{
    private readonly X509ChainPolicy? _serverPolicy;
    private readonly SslStreamCertificateContext? _clientCertificate;

    private NbdClientTls(string source, X509Certificate2Collection? authorities, SslStreamCertificateContext? clientCertificate, bool verifyPeer,
        string? hostName)
    {
        Source = source;
        _serverPolicy = authorities == null ? null : NbdTlsTrust.Policy(authorities, NbdTlsTrust.ServerAuthentication);
        _clientCertificate = clientCertificate;
        VerifyPeer = verifyPeer;
        HostName = hostName;
    }

    /// <summary>Where the trust came from, for messages: a directory's ca-cert.pem, or the system's CAs.</summary>
    public string Source { get; }

    public bool VerifyPeer { get; }

    /// <summary>The name the server's certificate must carry; null checks none.</summary>
    public string? HostName { get; }

    public bool HasClientCertificate => _clientCertificate != null;

    public static NbdClientTls For(NbdUri uri)
    {
        var tls = uri.Tls ?? throw new ArgumentException("The URI asks for no TLS.", nameof(uri));
        string? hostName = tls.HostName ?? (uri.Transport == NbdTransport.Tcp ? uri.Host : null);
        string? directory = tls.CertificateDirectory ?? DefaultDirectory();
        if (directory == null) return new NbdClientTls("the system's CA certificates", null, null, tls.VerifyPeer, hostName);

        NbdTlsCertificates.CheckDirectory(directory);
        var authorities = tls.VerifyPeer
            ? NbdTlsCertificates.LoadAuthorities(directory, "which checking the server's certificate needs (or say tls-verify-peer=false)")
            : null;
        SslStreamCertificateContext? client = null;
        if (File.Exists(Path.Combine(directory, NbdTlsCertificates.ClientCertificateFile)) || File.Exists(Path.Combine(directory, NbdTlsCertificates.ClientKeyFile)))
        {
            var (certificate, intermediates) = NbdTlsCertificates.LoadIdentity(directory, NbdTlsCertificates.ClientCertificateFile, NbdTlsCertificates.ClientKeyFile);
            client = SslStreamCertificateContext.Create(certificate, intermediates, offline: true);
        }
        return new NbdClientTls(Path.Combine(directory, NbdTlsCertificates.AuthorityFile), authorities, client, tls.VerifyPeer, hostName);
    }

    /// <summary>The handshake's options; <paramref name="refused"/> hears why the server's certificate was not good enough.</summary>
    public SslClientAuthenticationOptions ClientOptions(Action<string> refused) => new()
    {
        // For SNI and the name check; an IP address or nothing sends no SNI.
        TargetHost = HostName ?? "",
        ClientCertificateContext = _clientCertificate,
        CertificateChainPolicy = _serverPolicy,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
        {
            if (!VerifyPeer) return true;
            if (NbdTlsTrust.Complaint(certificate, chain, errors, checkName: HostName != null) is not { } complaint) return true;
            refused($"the server's certificate was refused: {complaint} (trusting {Source}{(HostName != null ? $", for the name '{HostName}'" : "")}).");
            return false;
        },
    };

    /// <summary>libnbd's directories when a URI names none; null when neither has a CA, which leaves the system's CAs.</summary>
    private static string? DefaultDirectory()
    {
        string? home = Environment.GetEnvironmentVariable("HOME");
        string[] candidates = Tmds.Linux.LibC.geteuid() == 0 || string.IsNullOrEmpty(home)
            ? ["/etc/pki/libnbd"]
            : [Path.Combine(home, ".pki", "libnbd"), Path.Combine(home, ".config", "pki", "libnbd")];
        return candidates.FirstOrDefault(d => File.Exists(Path.Combine(d, NbdTlsCertificates.AuthorityFile)));
    }
}
