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
/// <c>nbd+unix:///[export]?socket=/path</c>. TLS (<c>nbds</c>, <c>nbds+unix</c>, <c>tls-*</c>) is refused for now.
/// </summary>
public sealed record NbdUri
{
    /// <summary>The port IANA gave NBD; the URI format makes it the default.</summary>
    public const int DefaultPort = 10809;

    private static readonly string[] NbdSchemes = ["nbd", "nbd+unix", "nbds", "nbds+unix", "nbd+vsock", "nbds+vsock"];

    private NbdUri(NbdTransport transport, string? host, int port, string? socketPath, string exportName)
    {
        Transport = transport;
        Host = host;
        Port = port;
        SocketPath = socketPath;
        ExportName = exportName;
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

    /// <summary>Parses an NBD URI, or throws InvalidNbdUri (malformed, unknown parameter) or NbdTlsUnsupported.</summary>
    public static NbdUri Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int colon = text.IndexOf(':');
        string scheme = colon > 0 ? text[..colon].ToLowerInvariant() : "";
        switch (scheme)
        {
            case "nbd" or "nbd+unix":
                break;
            case "nbds" or "nbds+unix":
                throw NbdClientErrors.TlsUnsupported(text, $"'{text}' asks for TLS, which Kcopyd's NBD client does not support yet.");
            case "nbd+vsock" or "nbds+vsock":
                throw Invalid(text, "vsock transports are not supported: use nbd:// or nbd+unix://.");
            default:
                throw Invalid(text, "the scheme must be nbd or nbd+unix.");
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

        string? socket = null;
        foreach (var (key, value) in Parameters(text, query))
        {
            if (key == "socket")
            {
                if (socket != null) throw Invalid(text, "'socket' is given twice.");
                socket = value;
            }
            else if (key.StartsWith("tls-", StringComparison.Ordinal))
                throw NbdClientErrors.TlsUnsupported(text, $"'{text}' sets '{key}', but Kcopyd's NBD client does not support TLS yet.");
            else
                throw Invalid(text, $"the parameter '{key}' is not known (only 'socket' is, for nbd+unix).");
        }

        if (scheme == "nbd+unix")
        {
            if (authority.Length != 0) throw Invalid(text, "an nbd+unix URI has no host: write nbd+unix:///export?socket=/path.");
            if (string.IsNullOrEmpty(socket)) throw Invalid(text, "an nbd+unix URI needs '?socket=/path/to/socket'.");
            if (socket.Contains('\0') && socket[0] != '\0') throw Invalid(text, "the socket path contains NUL.");
            string full = socket[0] == '\0' ? socket : Path.GetFullPath(socket);
            return new NbdUri(NbdTransport.Unix, null, 0, full, exportName);
        }

        if (socket != null) throw Invalid(text, "'socket' is only for nbd+unix URIs.");
        var (host, port) = HostAndPort(text, authority);
        return new NbdUri(NbdTransport.Tcp, host, port, null, exportName);
    }

    /// <summary>
    /// The URI in one spelling for one export: scheme, host and port always written, the host in lower case, the
    /// socket path absolute, and only what must be is percent-encoded.
    /// </summary>
    public override string ToString()
    {
        string export = Encode(ExportName, keepSlash: true);
        if (Transport == NbdTransport.Unix) return $"nbd+unix:///{export}?socket={Encode(SocketPath!, keepSlash: true)}";
        string host = Host!.Contains(':') ? $"[{Host}]" : Host;
        return $"nbd://{host.ToLowerInvariant()}:{Port}/{export}";
    }

    /// <summary>Where to connect, for messages: "host:port" or the socket's path.</summary>
    public string Address => Transport == NbdTransport.Unix
        ? SocketPath!.Replace("\0", "@", StringComparison.Ordinal)
        : (Host!.Contains(':') ? $"[{Host}]:{Port}" : $"{Host}:{Port}");

    private static (string Host, int Port) HostAndPort(string text, string authority)
    {
        if (authority.Contains('@'))
            throw Invalid(text, "a user name in an NBD URI is only for TLS, which Kcopyd's NBD client does not support.");
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
