using Kcopyd.Host.Protocol;

namespace Kcopyd.Host;

/// <summary>The methods a client calls over the control socket; one instance serves every connection.</summary>
internal sealed class ControlService(string socketPath)
{
    private readonly HostInfo _info = new()
    {
        ProtocolVersion = ControlProtocol.Version,
        ProcessId = Environment.ProcessId,
        Version = typeof(ControlService).Assembly.GetName().Version?.ToString(3) ?? "0.0.0",
        StartTime = new DateTimeOffset(System.Diagnostics.Process.GetCurrentProcess().StartTime),
        SocketPath = socketPath,
    };

    public HostInfo GetHost() => _info;
}
