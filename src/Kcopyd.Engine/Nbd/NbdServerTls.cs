using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Kcopyd.Engine.Nbd;

/// <summary>
/// TLS an <see cref="NbdServer"/> requires of every client (the protocol's FORCEDTLS mode): the server's certificate,
/// and the CA that client certificates must lead to when clients are verified.
/// </summary>
/// <remarks>X.509 only: .NET's TLS has no pre-shared keys (TLS-PSK), so nbdkit's --tls-psk has no counterpart here.</remarks>
public sealed class NbdServerTls
{
    private readonly SslStreamCertificateContext _certificate;
    private readonly X509ChainPolicy? _clientPolicy;

    private NbdServerTls(string directory, SslStreamCertificateContext certificate, X509Certificate2Collection? clientAuthorities)
    {
        Directory = directory;
        _certificate = certificate;
        _clientPolicy = clientAuthorities == null ? null : NbdTlsTrust.Policy(clientAuthorities, NbdTlsTrust.ClientAuthentication);
    }

    /// <summary>Where the certificates came from.</summary>
    public string Directory { get; }

    /// <summary>Every client must give a certificate that leads to the directory's ca-cert.pem.</summary>
    public bool VerifiesClients => _clientPolicy != null;

    /// <summary>
    /// Reads server-cert.pem and server-key.pem (and, with <paramref name="verifyClients"/>, ca-cert.pem) from
    /// <paramref name="directory"/>: TlsCertificatesNotFound, TlsCertificateInvalid, TlsKeyReadableByOthers or
    /// TlsRevocationListUnsupported when they will not do.
    /// </summary>
    public static NbdServerTls FromDirectory(string directory, bool verifyClients)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        directory = Path.GetFullPath(directory);
        NbdTlsCertificates.CheckDirectory(directory);
        var (certificate, intermediates) = NbdTlsCertificates.LoadIdentity(directory, NbdTlsCertificates.ServerCertificateFile, NbdTlsCertificates.ServerKeyFile);
        var authorities = verifyClients ? NbdTlsCertificates.LoadAuthorities(directory, "which verifying client certificates needs") : null;
        return new NbdServerTls(directory, SslStreamCertificateContext.Create(certificate, intermediates, offline: true), authorities);
    }

    /// <summary>One connection's handshake options; <paramref name="refused"/> hears why a client's certificate was not good enough.</summary>
    internal SslServerAuthenticationOptions ServerOptions(Action<string> refused) => new()
    {
        ServerCertificateContext = _certificate,
        ClientCertificateRequired = _clientPolicy != null,
        CertificateChainPolicy = _clientPolicy,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        // Without client verification there is nothing to check: any client, or none, may connect.
        RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
        {
            if (_clientPolicy == null) return true;
            if (NbdTlsTrust.Complaint(certificate, chain, errors, checkName: false) is not { } complaint) return true;
            refused("the client's certificate was refused: " + complaint);
            return false;
        },
    };
}
