namespace Kcopyd.Engine.Nbd;

/// <summary>The errors opening an NBD export raises, with their stable ErrorIds.</summary>
internal static class NbdClientErrors
{
    public static KcopydException TlsUnsupported(string target, string message)
        => new("NbdTlsUnsupported", KcopydErrorKind.InvalidArgument, message, target);

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
