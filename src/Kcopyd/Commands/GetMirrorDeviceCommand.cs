using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Gets the status of the session's mirror devices, as dmsetup status gives it, fresh on every call.</summary>
[Cmdlet(VerbsCommon.Get, "MirrorDevice")]
[OutputType(typeof(MirrorInfo))]
public sealed class GetMirrorDeviceCommand : HostCommand
{
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(MirrorNameCompleter))]
    public string[]? Name { get; set; }

    protected override void EndProcessing()
    {
        foreach (var mirror in MirrorSelection.Select(this, Name)) WriteObject(mirror);
    }
}
