using System.Management.Automation;
using System.Reflection;
using System.Runtime.Loader;
namespace SpikeShim;
sealed class DepsContext(string dir) : AssemblyLoadContext("Kcopyd.Client")
{
    protected override Assembly? Load(AssemblyName name)
    {
        var file = Path.Combine(dir, name.Name + ".dll");
        return File.Exists(file) ? LoadFromAssemblyPath(file) : null; // null: the framework, from the default context
    }
}
public sealed class Init : IModuleAssemblyInitializer
{
    static readonly string Deps = Path.Combine(Path.GetDirectoryName(typeof(Init).Assembly.Location)!, "deps");
    static readonly DepsContext Context = new(Deps);
    public void OnImport() => AssemblyLoadContext.Default.Resolving += (_, name) =>
        name.Name == "core" ? Context.LoadFromAssemblyPath(Path.Combine(Deps, "core.dll")) : null;
}
[Cmdlet(VerbsCommon.Get, "SpikeHost")]
public sealed class GetSpikeHostCommand : PSCmdlet
{
    [Parameter(Mandatory = true)] public string Path { get; set; } = "";
    protected override void EndProcessing() => WriteObject(SpikeCore.Rpc.GetHost(Path));
}
