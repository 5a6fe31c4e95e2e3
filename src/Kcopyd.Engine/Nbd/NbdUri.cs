using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace Kcopyd.Engine.Nbd;

/// <summary>How an NBD URI reaches its server.</summary>
public enum NbdTransport
{
    Tcp,
    Unix,
}

/// <summary>
/// An NBD export's address (github.com/NetworkBlockDevice/nbd, doc/uri.md): <c>nbd://host[:port]/[export]</c> or
/// <c>nbd+unix:///[export]?socket=/path</c>; <c>nbds</c> and <c>nbds+unix</c> require TLS, with libnbd's parameters
/// <c>tls-certificates=DIR</c>, <c>tls-verify-peer=false</c> and <c>tls-hostname=NAME</c>. TLS-PSK
/// (<c>tls-psk-file</c>) is refused with NbdTlsPskUnsupported: .NET's TLS has no pre-shared keys.
/// </summary>
public sealed record NbdUri
{
    /// <summary>The port IANA gave NBD; the URI format makes it the default.</summary>
    public const int DefaultPort = 10809;

    private static readonly string[] NbdSchemes = ["nbd", "nbd+unix", "nbds", "nbds+unix", "nbd+vsock", "nbds+vsock"];

    private NbdUri(NbdTransport transport, string? host, int port, string? socketPath, string exportName, NbdUriTls? tls)
    {
        Transport = transport;
        Host = host;
        Port = port;
        SocketPath = socketPath;
        ExportName = exportName;
        Tls = tls;
    }

    public NbdTransport Transport { get; }

    /// <summary>The host name or IP address (without an IPv6 literal's brackets); null for a Unix socket.</summary>
    public string? Host { get; }

    /// <summary>The TCP port; 0 for a Unix socket.</summary>
    public int Port { get; }

    /// <summary>The Unix socket, made absolute (an abstract socket's name starts with NUL and is kept as is); null for TCP.</summary>
    public string? SocketPath { get; }

    /// <summary>The export name: the URI's path without its leading '/', percent-decoded. Empty for the default export.</summary>
    public string ExportName { get; }

    /// <summary>How TLS is required (an nbds or nbds+unix URI); null for plain text.</summary>
    public NbdUriTls? Tls { get; }

    /// <summary>
    /// True when <paramref name="text"/> has an NBD scheme, valid or not: such a text is meant as a URI and should
    /// get <see cref="Parse"/>'s error, not be taken for a relative path.
    /// </summary>
    public static bool IsNbdUri(string? text)
    {
        if (text == null) return false;
        int colon = text.IndexOf(':');
        return colon > 0 && NbdSchemes.Contains(text[..colon], StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>Parses an NBD URI; false for anything else, including an NBD URI this client cannot use.</summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out NbdUri? uri)
    {
        uri = null;
        if (!IsNbdUri(text)) return false;
        try
        {
            uri = Parse(text!);
            return true;
        }
        catch (KcopydException)
        {
            return false;
        }
    }

    /// <summary>Parses an NBD URI, or throws InvalidNbdUri (malformed, unknown parameter) or NbdTlsPskUnsupported.</summary>
    public static NbdUri Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int colon = text.IndexOf(':');
        string scheme = colon > 0 ? text[..colon].ToLowerInvariant() : "";
        switch (scheme)
        {
            case "nbd" or "nbd+unix" or "nbds" or "nbds+unix":
                break;
            case "nbd+vsock" or "nbds+vsock":
                throw Invalid(text, "vsock transports are not supported: use nbd:// or nbd+unix://.");
            default:
                throw Invalid(text, "the scheme must be nbd, nbd+unix, nbds or nbds+unix.");
        }
        string rest = text[(colon + 1)..];
        if (!rest.StartsWith("//", StringComparison.Ordinal)) throw Invalid(text, $"'{scheme}:' must be followed by '//'.");
        rest = rest[2..];
        if (rest.IndexOf('#') >= 0) throw Invalid(text, "a fragment ('#') has no meaning in an NBD URI.");

        int pathStart = rest.IndexOfAny(['/', '?']);
        string authority = pathStart < 0 ? rest : rest[..pathStart];
        rest = pathStart < 0 ? "" : rest[pathStart..];
        int queryStart = rest.IndexOf('?');
        string path = queryStart < 0 ? rest : rest[..queryStart];
        string? query = queryStart < 0 ? null : rest[(queryStart + 1)..];

        // The URI format passes the path minus its first '/' as the export name, so "//disk" names "/disk".
        string exportName = Decode(text, path.Length == 0 ? "" : path[1..], "the export name");
        if (Encoding.UTF8.GetByteCount(exportName) > NbdProtocol.MaxNameLength)
            throw Invalid(text, $"the export name is longer than {NbdProtocol.MaxNameLength} bytes.");

        bool tls = scheme.StartsWith("nbds", StringComparison.Ordinal);
        bool unix = scheme.EndsWith("+unix", StringComparison.Ordinal);
        string? socket = null, certificates = null, hostName = null;
        bool? verifyPeer = null;
        foreach (var (key, value) in Parameters(text, query))
        {
            if (key == "tls-psk-file")
                throw new KcopydException("NbdTlsPskUnsupported", KcopydErrorKind.InvalidArgument,
                    $"'{text}' asks for TLS with a pre-shared key (tls-psk-file), which Kcopyd cannot offer: .NET's TLS has no PSK. Use X.509 certificates (tls-certificates=DIR) instead.", text);
            if (key.StartsWith("tls-", StringComparison.Ordinal) && !tls)
                throw Invalid(text, $"'{key}' is for TLS, which only an nbds or nbds+unix URI asks for.");
            switch (key)
            {
                case "socket":
                    Once(text, key, socket);
                    socket = value;
                    break;
                case "tls-certificates":
                    Once(text, key, certificates);
                    if (value.Length == 0) throw Invalid(text, "'tls-certificates' needs a directory.");
                    certificates = Path.GetFullPath(value);
                    break;
                case "tls-verify-peer":
                    Once(text, key, verifyPeer);
                    verifyPeer = Boolean(text, key, value);
                    break;
                case "tls-hostname":
                    Once(text, key, hostName);
                    if (value.Length == 0 || value.Any(c => char.IsWhiteSpace(c) || c == '\0')) throw Invalid(text, $"'{value}' is not a host name for 'tls-hostname'.");
                    hostName = value;
                    break;
                case "tls-username":
                    // A PSK identity to libnbd: with certificates it means nothing, so libnbd's own examples carry one harmlessly.
                    break;
                default:
                    throw Invalid(text, $"the parameter '{key}' is not known (these are: socket, tls-certificates, tls-verify-peer, tls-hostname).");
            }
        }
        var tlsSettings = tls ? new NbdUriTls(certificates, verifyPeer ?? true, hostName) : null;

        if (unix)
        {
            // libnbd's example puts a user name there ("nbds+unix://alice@/"): a TLS-PSK identity, meaningless with certificates.
            if (tls && authority.EndsWith('@') && authority.IndexOf('@') == authority.Length - 1) authority = "";
            if (authority.Length != 0) throw Invalid(text, $"an {scheme} URI has no host: write {scheme}:///export?socket=/path.");
            if (string.IsNullOrEmpty(socket)) throw Invalid(text, $"an {scheme} URI needs '?socket=/path/to/socket'.");
            if (socket.Contains('\0') && socket[0] != '\0') throw Invalid(text, "the socket path contains NUL.");
            string full = socket[0] == '\0' ? socket : Path.GetFullPath(socket);
            return new NbdUri(NbdTransport.Unix, null, 0, full, exportName, tlsSettings);
        }

        if (socket != null) throw Invalid(text, "'socket' is only for nbd+unix and nbds+unix URIs.");
        int at = authority.IndexOf('@');
        if (tls && at >= 0) authority = authority[(at + 1)..]; // a TLS-PSK user name, as above
        var (host, port) = HostAndPort(text, authority);
        return new NbdUri(NbdTransport.Tcp, host, port, null, exportName, tlsSettings);
    }

    private static void Once(string text, string key, object? earlier)
    {
        if (earlier != null) throw Invalid(text, $"'{key}' is given twice.");
    }

    private static bool Boolean(string text, string key, string value) => value.ToLowerInvariant() switch
    {
        "1" or "true" or "yes" or "on" => true,
        "0" or "false" or "no" or "off" => false,
        _ => throw Invalid(text, $"'{key}' takes true or false, not '{value}'."),
    };

    /// <summary>
    /// The URI in one spelling for one export: scheme, host and port always written, the host in lower case, the
    /// socket path absolute, and only what must be is percent-encoded; the TLS parameters that differ from the defaults.
    /// </summary>
    public override string ToString()
    {
        var parameters = new List<string>();
        if (Transport == NbdTransport.Unix) parameters.Add("socket=" + Encode(SocketPath!, keepSlash: true));
        if (Tls is { } tls)
        {
            if (tls.CertificateDirectory != null) parameters.Add("tls-certificates=" + Encode(tls.CertificateDirectory, keepSlash: true));
            if (!tls.VerifyPeer) parameters.Add("tls-verify-peer=false");
            if (tls.HostName != null) parameters.Add("tls-hostname=" + Encode(tls.HostName, keepSlash: false));
        }
        string query = parameters.Count == 0 ? "" : "?" + string.Join('&', parameters);
        return Spelling(Tls != null) + query;
    }

    /// <summary>
    /// The export alone, in plain nbd:// or nbd+unix:// spelling whatever the TLS: the same export reached with or
    /// without TLS, or with other certificates, is the same device.
    /// </summary>
    public string ExportAddress
        => Transport == NbdTransport.Unix ? Spelling(tls: false) + "?socket=" + Encode(SocketPath!, keepSlash: true) : Spelling(tls: false);

    private string Spelling(bool tls)
    {
        string export = Encode(ExportName, keepSlash: true);
        if (Transport == NbdTransport.Unix) return $"{(tls ? "nbds" : "nbd")}+unix:///{export}";
        string host = Host!.Contains(':') ? $"[{Host}]" : Host;
        return $"{(tls ? "nbds" : "nbd")}://{host.ToLowerInvariant()}:{Port}/{export}";
    }

    /// <summary>Where to connect, for messages: "host:port" or the socket's path.</summary>
    public string Address => Transport == NbdTransport.Unix
        ? SocketPath!.Replace("\0", "@", StringComparison.Ordinal)
        : (Host!.Contains(':') ? $"[{Host}]:{Port}" : $"{Host}:{Port}");

    private static (string Host, int Port) HostAndPort(string text, string authority)
    {
        if (authority.Contains('@'))
            throw Invalid(text, "a user name in an NBD URI is only for TLS (an nbds URI), where it names a TLS-PSK identity.");
        string host;
        string? port = null;
        if (authority.StartsWith('['))
        {
            int close = authority.IndexOf(']');
            if (close < 0) throw Invalid(text, "an IPv6 address opened with '[' is not closed with ']'.");
            host = authority[1..close];
            string after = authority[(close + 1)..];
            if (after.Length > 0)
            {
                if (after[0] != ':') throw Invalid(text, "only ':port' may follow an IPv6 address.");
                port = after[1..];
            }
            if (!System.Net.IPAddress.TryParse(host, out var address) || address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
                throw Invalid(text, $"'{host}' is not an IPv6 address.");
        }
        else
        {
            int colon = authority.LastIndexOf(':');
            host = colon < 0 ? authority : authority[..colon];
            if (colon >= 0) port = authority[(colon + 1)..];
            host = Decode(text, host, "the host");
            if (host.Length == 0) throw Invalid(text, "an nbd URI needs a host: nbd://host[:port]/export.");
            if (host.Any(c => char.IsWhiteSpace(c) || c is ':' or '[' or ']' or '\0'))
                throw Invalid(text, $"'{host}' is not a host name.");
        }
        int portNumber = DefaultPort;
        if (port != null && (port.Length == 0 || port.Any(c => c is < '0' or > '9') || !int.TryParse(port, out portNumber)
            || portNumber is < 1 or > 65535))
            throw Invalid(text, $"the port '{port}' is not a number from 1 to 65535.");
        return (host, portNumber);
    }

    private static IEnumerable<(string Key, string Value)> Parameters(string text, string? query)
    {
        if (string.IsNullOrEmpty(query)) yield break;
        foreach (string pair in query.Split('&', ';'))
        {
            if (pair.Length == 0) continue;
            int equals = pair.IndexOf('=');
            string key = Decode(text, equals < 0 ? pair : pair[..equals], "a parameter name");
            string value = equals < 0 ? "" : Decode(text, pair[(equals + 1)..], $"the parameter '{key}'");
            yield return (key, value);
        }
    }

    /// <summary>Percent-decoding into UTF-8, strictly: a stray '%' or bytes that are not UTF-8 are errors, not guesses.</summary>
    private static string Decode(string text, string part, string what)
    {
        if (part.IndexOf('%') < 0) return part;
        var bytes = new List<byte>(part.Length);
        int i = 0;
        while (i < part.Length)
        {
            int percent = part.IndexOf('%', i);
            int end = percent < 0 ? part.Length : percent;
            bytes.AddRange(Encoding.UTF8.GetBytes(part[i..end]));
            if (percent < 0) break;
            if (percent + 2 >= part.Length || !char.IsAsciiHexDigit(part[percent + 1]) || !char.IsAsciiHexDigit(part[percent + 2]))
                throw Invalid(text, $"{what} has a '%' not followed by two hex digits.");
            bytes.Add(Convert.ToByte(part.Substring(percent + 1, 2), 16));
            i = percent + 3;
        }
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes.ToArray());
        }
        catch (DecoderFallbackException)
        {
            throw Invalid(text, $"{what} is not UTF-8 once percent-decoded.");
        }
    }

    private static string Encode(string value, bool keepSlash)
    {
        var builder = new StringBuilder(value.Length);
        foreach (byte b in Encoding.UTF8.GetBytes(value))
        {
            char c = (char)b;
            bool plain = char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~' || (keepSlash && c == '/');
            if (plain) builder.Append(c);
            else builder.Append('%').Append(b.ToString("X2"));
        }
        return builder.ToString();
    }

    private static KcopydException Invalid(string text, string reason)
        => new("InvalidNbdUri", KcopydErrorKind.InvalidArgument, $"'{text}' is not a usable NBD URI: {reason}", text);
}

/// <summary>The TLS an nbds or nbds+unix URI asks for, in libnbd's parameters.</summary>
/// <param name="CertificateDirectory">tls-certificates: ca-cert.pem to check the server by, client-cert.pem and client-key.pem
/// to show it; null looks where libnbd does (/etc/pki/libnbd for root, ~/.pki/libnbd otherwise), then trusts the system's CAs.</param>
/// <param name="VerifyPeer">tls-verify-peer: check the server's certificate (true unless the URI says false).</param>
/// <param name="HostName">tls-hostname: the name the server's certificate must carry, instead of the URI's host; over a
/// Unix socket, which has no host, the only name checked.</param>
public sealed record NbdUriTls(string? CertificateDirectory, bool VerifyPeer, string? HostName);
