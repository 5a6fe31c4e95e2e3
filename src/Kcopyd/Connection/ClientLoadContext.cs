using System.Reflection;
using System.Runtime.Loader;

namespace Kcopyd.Connection;

/// <summary>
/// The load context of the module's RPC client (Kcopyd.Client and StreamJsonRpc's packages, in bin/deps/): another
/// module's copies of those packages, at other versions, cannot clash with ours (docs/design-notes.md). What the
/// module itself carries in bin/ (the protocol, the engine) is shared from the default context, so its types cross.
/// </summary>
internal sealed class ClientLoadContext(string moduleDirectory) : AssemblyLoadContext("Kcopyd.Client")
{
    private readonly string _deps = Path.Combine(moduleDirectory, "deps");

    protected override Assembly? Load(AssemblyName name)
    {
        // Shared: loaded into the default context (where the module's own types live) if it is not there yet.
        string shared = Path.Combine(moduleDirectory, name.Name + ".dll");
        if (File.Exists(shared)) return Default.LoadFromAssemblyPath(shared);
        string file = Path.Combine(_deps, name.Name + ".dll");
        return File.Exists(file) ? LoadFromAssemblyPath(file) : null; // null: the framework, from the default context
    }

    /// <summary>HostConnector.Connect of the isolated client, as a delegate of framework and protocol types only.</summary>
    public Func<string, bool, bool, Kcopyd.Protocol.IHostChannel?> LoadConnector()
    {
        var assembly = LoadFromAssemblyPath(Path.Combine(_deps, "Kcopyd.Client.dll"));
        var connect = assembly.GetType("Kcopyd.Client.HostConnector", throwOnError: true)!.GetMethod("Connect")!;
        return connect.CreateDelegate<Func<string, bool, bool, Kcopyd.Protocol.IHostChannel?>>();
    }
}
