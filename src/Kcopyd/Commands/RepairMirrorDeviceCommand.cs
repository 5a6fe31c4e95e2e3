using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>
/// Repairs a mirror device: re-adds dead legs whose device works again, copying only the regions written while they
/// were out (mdadm --re-add), or with -ReplaceLeg/-NewLeg rebuilds a leg onto a new device (lvconvert --replace).
/// </summary>
[Cmdlet(VerbsDiagnostic.Repair, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = ReAddSet)]
[OutputType(typeof(MirrorInfo))]
public sealed class RepairMirrorDeviceCommand : HostCommand
{
    private const string ReAddSet = "ReAdd";
    private const string ReplaceSet = "Replace";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(MirrorNameCompleter))]
    public string Name { get; set; } = null!;

    /// <summary>The leg to replace: its path as the mirror shows it.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ReplaceSet)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(MirrorLegCompleter))]
    public string ReplaceLeg { get; set; } = null!;

    /// <summary>The device that takes its place; everything on it is overwritten by a full resync.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ReplaceSet)]
    [ValidateNotNull]
    [DeviceArgumentTransformation]
    [ArgumentCompleter(typeof(DevicePathCompleter))]
    public DeviceArgument NewLeg { get; set; } = null!;

    /// <summary>Use a new leg that is mounted, held open by another program, or holds data.</summary>
    [Parameter(ParameterSetName = ReplaceSet)]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        // Under -WhatIf nothing changed, and nothing is output (as New-, Add- and Remove- do).
        var status = ParameterSetName == ReplaceSet
            ? CallOrWriteError<MirrorInfo?>(ControlMethods.ReplaceLeg, Name, ReplaceLeg, NewLeg.ToRef(this), Force.IsPresent)
            : CallOrWriteError<MirrorInfo?>(ControlMethods.RepairMirror, Name);
        if (status != null) WriteObject(status);
    }
}
