namespace Kcopyd.Engine.Nbd;

/// <summary>The errors opening an NBD export raises, with their stable ErrorIds.</summary>
internal static class NbdClientErrors
{
    public static KcopydException TlsRequired(string target, string serverSaid)
        => new("NbdTlsRequired", KcopydErrorKind.PermissionDenied,
            $"The NBD server of '{target}' requires TLS: use an nbds:// or nbds+unix:// URI, with tls-certificates=DIR naming the directory of its CA (ca-cert.pem).{serverSaid}", target);

    public static KcopydException TlsNotOffered(string target, string reason)
        => new("NbdTlsNotOffered", KcopydErrorKind.InvalidOperation,
            $"'{target}' asks for TLS, but the NBD server does not offer it: {reason} The export was not asked for in plain text; use an nbd:// URI if plain text is what you want.", target);

    public static KcopydException TlsHandshakeFailed(string target, string reason, Exception? inner = null)
        => new("NbdTlsHandshakeFailed", KcopydErrorKind.PermissionDenied, $"The TLS handshake with the NBD server of '{target}' failed: {reason}", target, inner);

    public static KcopydException ConnectFailed(string target, string address, string reason, Exception? inner = null)
        => new("NbdConnectFailed", KcopydErrorKind.NotFound, $"Cannot connect to the NBD server at {address}: {reason}", target, inner);

    public static KcopydException ExportNotFound(string target, string exportName, string reason)
        => new("NbdExportNotFound", KcopydErrorKind.NotFound,
            $"The NBD server of '{target}' did not give the export {Quote(exportName)}: {reason}", target);

    public static KcopydException HandshakeTimeout(string target, TimeSpan timeout)
        => new("NbdHandshakeTimeout", KcopydErrorKind.DeviceError,
            $"The NBD server of '{target}' did not complete the handshake within {timeout.TotalSeconds:0.#} s.", target);

    public static KcopydException HandshakeFailed(string target, string reason, Exception? inner = null)
        => new("NbdHandshakeFailed", KcopydErrorKind.DeviceError, $"The NBD handshake with '{target}' failed: {reason}", target, inner);

    private static string Quote(string exportName) => exportName.Length == 0 ? "'' (the default export)" : $"'{exportName}'";
}
