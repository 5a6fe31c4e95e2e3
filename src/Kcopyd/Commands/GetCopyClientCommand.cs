using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Gets the host's copy clients: pages free of their pool, jobs running, throttle. The default one is always listed.</summary>
[Cmdlet(VerbsCommon.Get, "CopyClient")]
[OutputType(typeof(CopyClientInfo))]
public sealed class GetCopyClientCommand : HostCommand
{
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(ClientNameCompleter))]
    public string[]? Name { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var client in ClientSelection.Select(this, Name)) WriteObject(client);
    }
}
