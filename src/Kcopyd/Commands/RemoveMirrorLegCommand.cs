using System.Management.Automation;
using Kcopyd.Engine;
using Kcopyd.Engine.Mirror;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>
/// Takes a leg out of a mirror device (lvconvert --splitmirrors): a leg that was alive and in sync is a consistent
/// copy of the mirror at that moment; one that was not says so with a warning.
/// </summary>
[Cmdlet(VerbsCommon.Remove, "MirrorLeg", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(MirrorStatus))]
public sealed class RemoveMirrorLegCommand : PSCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = null!;

    /// <summary>The leg's path as the mirror shows it.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Leg { get; set; } = null!;

    protected override void EndProcessing()
    {
        try
        {
            var mirror = KcopydSession.GetMirror(Name);
            // Before ShouldProcess: -WhatIf on a leg the mirror does not have says so rather than what it would do.
            var device = mirror.FindLeg(Leg).Device;
            if (!ShouldProcess(Leg, $"Remove from mirror '{mirror.Name}'")) return;
            bool consistent = mirror.RemoveLeg(Leg);
            KcopydSession.CloseLeg(mirror.Name, device);
            if (!consistent)
                WriteWarning($"'{Leg}' was not alive and in sync when it left mirror '{mirror.Name}': it is not a consistent copy of the mirror.");
            WriteObject(mirror.GetStatus());
        }
        catch (KcopydException ex)
        {
            ThrowTerminatingError(ErrorRecords.From(ex));
        }
    }
}
