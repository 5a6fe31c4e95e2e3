using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Adds a leg to a mirror device; it is resynced whole from the default leg before it serves reads.</summary>
[Cmdlet(VerbsCommon.Add, "MirrorLeg", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(MirrorInfo))]
public sealed class AddMirrorLegCommand : HostCommand
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(MirrorNameCompleter))]
    public string Name { get; set; } = null!;

    /// <summary>A block device, image file or mirror; everything on it is overwritten.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNull]
    [DeviceArgumentTransformation]
    [ArgumentCompleter(typeof(DevicePathCompleter))]
    public DeviceArgument Leg { get; set; } = null!;

    /// <summary>Use a leg that is mounted, held open by another program, or holds data.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        if (CallOrWriteError<MirrorInfo?>(ControlMethods.AddLeg, Name, Leg.ToRef(this), Force.IsPresent) is { } status) WriteObject(status);
    }
}
