using System.Net.Sockets;
using StreamJsonRpc;
var path = args[0];
File.Delete(path);
using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
listener.Bind(new UnixDomainSocketEndPoint(path));
listener.Listen(8);
Console.WriteLine($"listening {path} StreamJsonRpc {typeof(JsonRpc).Assembly.GetName().Version}");
while (true)
{
    var s = await listener.AcceptAsync();
    _ = Task.Run(async () =>
    {
        using var stream = new NetworkStream(s, ownsSocket: true);
        using var rpc = JsonRpc.Attach(stream, new Target());
        await rpc.Completion;
    });
}
public sealed class Target
{
    public object GetHost(int protocolVersion) => new { ProtocolVersion = 1, ProcessId = Environment.ProcessId, Version = "spike", Runtime = Environment.Version.ToString(), Asked = protocolVersion };
}
