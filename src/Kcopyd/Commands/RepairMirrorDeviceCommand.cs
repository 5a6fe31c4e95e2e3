using System.Management.Automation;
using Kcopyd.Engine;
using Kcopyd.Engine.Mirror;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>
/// Repairs a mirror device: re-adds dead legs whose device works again, copying only the regions written while they
/// were out (mdadm --re-add), or with -ReplaceLeg/-NewLeg rebuilds a leg onto a new device (lvconvert --replace).
/// </summary>
[Cmdlet(VerbsDiagnostic.Repair, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = ReAddSet)]
[OutputType(typeof(MirrorStatus))]
public sealed class RepairMirrorDeviceCommand : PSCmdlet
{
    private const string ReAddSet = "ReAdd";
    private const string ReplaceSet = "Replace";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = null!;

    /// <summary>The leg to replace: its path as the mirror shows it.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ReplaceSet)]
    [ValidateNotNullOrEmpty]
    public string ReplaceLeg { get; set; } = null!;

    /// <summary>The device that takes its place; everything on it is overwritten by a full resync.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ReplaceSet)]
    [ValidateNotNull]
    [DeviceArgumentTransformation]
    public DeviceArgument NewLeg { get; set; } = null!;

    /// <summary>Use a new leg that is mounted, held open by another program, or holds data.</summary>
    [Parameter(ParameterSetName = ReplaceSet)]
    public SwitchParameter Force { get; set; }

    protected override void EndProcessing()
    {
        try
        {
            var mirror = KcopydSession.GetMirror(Name);
            // Under -WhatIf nothing changed, and nothing is output (as New-, Add- and Remove- do).
            bool acted = ParameterSetName == ReplaceSet ? Replace(mirror) : ReAdd(mirror);
            if (acted) WriteObject(mirror.GetStatus());
        }
        catch (KcopydException ex)
        {
            ThrowTerminatingError(ErrorRecords.From(ex));
        }
    }

    private bool ReAdd(MirrorDevice mirror)
    {
        var dead = mirror.Legs.Where(l => l.Health == LegHealth.Dead).Select(l => l.Name).ToArray();
        if (dead.Length == 0)
        {
            WriteVerbose($"Mirror '{mirror.Name}' has no dead leg.");
            return true;
        }
        if (!ShouldProcess(string.Join(", ", dead), $"Re-add to mirror '{mirror.Name}' and copy the regions written while they were out")) return false;
        foreach (var (leg, error) in mirror.ReAddDeadLegs())
        {
            if (error == null) WriteVerbose($"'{leg}' is back; its out-of-sync regions are being copied.");
            else WriteError(ErrorRecords.Create("LegStillFailing", ErrorCategory.DeviceError, leg,
                $"'{leg}' stays dead: {error}. Replace it with -ReplaceLeg '{leg}' -NewLeg <device>."));
        }
        return true;
    }

    private bool Replace(MirrorDevice mirror)
    {
        // Before opening the new leg or ShouldProcess: a leg the mirror does not have is LegNotFound, under -WhatIf too.
        var old = mirror.FindLeg(ReplaceLeg).Device;
        var devices = new DeviceScope(this);
        try
        {
            var device = devices.OpenForWrite(NewLeg, Force, asLeg: true);
            if (!Force) LegChecks.RefuseIfHoldsData(device, "the new leg");
            if (!ShouldProcess(device.Name, $"Replace leg '{ReplaceLeg}' of mirror '{mirror.Name}' and overwrite it with a full resync"))
            {
                devices.CloseAll();
                return false;
            }
            mirror.ReplaceLeg(ReplaceLeg, device);
            foreach (var opened in devices.Opened) KcopydSession.AdoptLeg(mirror.Name, opened);
            KcopydSession.CloseLeg(mirror.Name, old);
            return true;
        }
        catch
        {
            devices.CloseAll();
            throw;
        }
    }
}
