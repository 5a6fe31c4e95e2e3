using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Protocol;

namespace Kcopyd.Commands;

/// <summary>
/// Ends a mirror's NBD exports: its block device is detached first. A mounted block device, or NBD clients still
/// connected, are refused (ExportInUse) unless -Force.
/// </summary>
[Cmdlet(VerbsData.Unpublish, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(ExportInfo))]
public sealed class UnpublishMirrorDeviceCommand : HostCommand
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(MirrorNameCompleter))]
    public string Name { get; set; } = null!;

    /// <summary>End the exports even while the block device is mounted or clients are connected.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Output the exports that ended, with their final counters.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        var ended = CallOrWriteError<ExportInfo[]?>(ControlMethods.UnpublishMirror, Name, Force.IsPresent);
        if (ended != null && PassThru) WriteObject(ended, enumerateCollection: true);
    }
}
