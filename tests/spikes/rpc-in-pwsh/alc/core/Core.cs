using System.Net.Sockets;
using StreamJsonRpc;
namespace SpikeCore;
// Only framework types cross the boundary, so the default ALC never needs StreamJsonRpc's types.
public static class Rpc
{
    public static IDictionary<string, object?> GetHost(string path)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        using var stream = new NetworkStream(s, ownsSocket: false);
        using var rpc = JsonRpc.Attach(stream);
        var r = rpc.InvokeAsync<Dictionary<string, object?>>("GetHost", 1).GetAwaiter().GetResult();
        r["ThreadingLoadedFrom"] = typeof(Microsoft.VisualStudio.Threading.JoinableTaskContext).Assembly.GetName().Version?.ToString();
        return r;
    }
}
