using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Kcopyd.Engine.Nbd;

/// <summary>How either side checks the other's certificate: against the given CA certificates only, never the system's.</summary>
internal static class NbdTlsTrust
{
    public static readonly Oid ServerAuthentication = new("1.3.6.1.5.5.7.3.1");
    public static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");

    /// <summary>A chain must end at one of <paramref name="authorities"/> and allow <paramref name="purpose"/> (when it names purposes at all).</summary>
    public static X509ChainPolicy Policy(X509Certificate2Collection authorities, Oid purpose)
    {
        var policy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            // Nothing to fetch revocation from: the directory is the whole of the trust, as it is for gnutls here.
            RevocationMode = X509RevocationMode.NoCheck,
        };
        policy.CustomTrustStore.AddRange(authorities);
        policy.ApplicationPolicy.Add(purpose);
        return policy;
    }

    /// <summary>Why SslStream found a certificate wanting, in words for an error message; null when it did not.</summary>
    public static string? Complaint(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors, bool checkName)
    {
        if (!checkName) errors &= ~SslPolicyErrors.RemoteCertificateNameMismatch;
        if (errors == SslPolicyErrors.None) return null;
        if ((errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0) return "no certificate was given";
        var reasons = new List<string>();
        if ((errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0)
        {
            var statuses = chain?.ChainStatus.Where(s => s.Status != X509ChainStatusFlags.NoError).Select(s => s.Status.ToString()).Distinct().ToArray() ?? [];
            reasons.Add($"its certificate ({certificate?.Subject}) does not lead to a trusted CA{(statuses.Length > 0 ? $" ({string.Join(", ", statuses)})" : "")}");
        }
        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
            reasons.Add($"its certificate ({certificate?.Subject}) is not for the host name asked for");
        return string.Join("; ", reasons);
    }
}
