namespace Kcopyd.Host.Protocol;

/// <summary>The control socket's protocol: JSON-RPC (StreamJsonRpc, header-delimited JSON) over a Unix socket.</summary>
public static class ControlProtocol
{
    /// <summary>Raised whenever a method's meaning or shape changes; a client refuses a host of another version.</summary>
    public const int Version = 1;

    /// <summary>The socket's name inside the runtime directory.</summary>
    public const string SocketName = "control.sock";

    /// <summary>Keeps its name and the ProtocolVersion property in every version, so any client can ask it first.</summary>
    public const string GetHost = "GetHost";
}
