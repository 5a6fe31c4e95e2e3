using System.Management.Automation;
using System.Net.Sockets;
using StreamJsonRpc;
namespace Spike;
public sealed class HostInfo { public int ProtocolVersion { get; set; } public int ProcessId { get; set; } public string? Version { get; set; } public string? Runtime { get; set; } public int Asked { get; set; } }
public static class SpikeClient
{
    public static HostInfo GetHost(string path)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        using var stream = new NetworkStream(s, ownsSocket: false);
        using var rpc = JsonRpc.Attach(stream);
        return rpc.InvokeAsync<HostInfo>("GetHost", 1).GetAwaiter().GetResult();
    }
}
[Cmdlet(VerbsCommon.Get, "SpikeHost")]
public sealed class GetSpikeHostCommand : PSCmdlet
{
    [Parameter(Mandatory = true)] public string Path { get; set; } = "";
    protected override void EndProcessing() => WriteObject(SpikeClient.GetHost(Path));
}
