namespace Kcopyd.Host.Protocol;

/// <summary>What GetHost answers: who the host is and which protocol it speaks.</summary>
public sealed class HostInfo
{
    public int ProtocolVersion { get; set; }
    public int ProcessId { get; set; }
    public string Version { get; set; } = "";
    public DateTimeOffset StartTime { get; set; }
    public string SocketPath { get; set; } = "";
}
