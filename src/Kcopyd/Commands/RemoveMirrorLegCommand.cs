using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Protocol;

namespace Kcopyd.Commands;

/// <summary>
/// Takes a leg out of a mirror device (lvconvert --splitmirrors): a leg that was alive and in sync is a consistent
/// copy of the mirror at that moment; one that was not says so with a warning.
/// </summary>
[Cmdlet(VerbsCommon.Remove, "MirrorLeg", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(MirrorInfo))]
public sealed class RemoveMirrorLegCommand : HostCommand
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(MirrorNameCompleter))]
    public string Name { get; set; } = null!;

    /// <summary>The leg's path as the mirror shows it.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(MirrorLegCompleter))]
    public string Leg { get; set; } = null!;

    protected override void ProcessRecord()
    {
        if (CallOrWriteError<MirrorInfo?>(ControlMethods.RemoveLeg, Name, Leg) is { } status) WriteObject(status);
    }
}
