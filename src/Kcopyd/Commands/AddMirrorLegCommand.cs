using System.Management.Automation;
using Kcopyd.Engine;
using Kcopyd.Engine.Mirror;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Adds a leg to a mirror device; it is resynced whole from the default leg before it serves reads.</summary>
[Cmdlet(VerbsCommon.Add, "MirrorLeg", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(MirrorStatus))]
public sealed class AddMirrorLegCommand : PSCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = null!;

    /// <summary>A block device, image file or mirror; everything on it is overwritten.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNull]
    [DeviceArgumentTransformation]
    public DeviceArgument Leg { get; set; } = null!;

    /// <summary>Use a leg that is mounted, held open by another program, or holds data.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void EndProcessing()
    {
        var devices = new DeviceScope(this);
        try
        {
            var mirror = KcopydSession.GetMirror(Name);
            var device = devices.OpenForWrite(Leg, Force, asLeg: true);
            if (!Force) LegChecks.RefuseIfHoldsData(device, "the new leg");
            if (!ShouldProcess(device.Name, $"Add to mirror '{mirror.Name}' and overwrite it with a full resync"))
            {
                devices.CloseAll();
                return;
            }
            mirror.AddLeg(device);
            foreach (var opened in devices.Opened) KcopydSession.AdoptLeg(mirror.Name, opened);
            WriteObject(mirror.GetStatus());
        }
        catch (KcopydException ex)
        {
            devices.CloseAll();
            ThrowTerminatingError(ErrorRecords.From(ex));
        }
    }
}
