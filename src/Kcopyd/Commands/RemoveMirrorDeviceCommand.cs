using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Flushes a mirror device, stops its recovery and releases its legs.</summary>
[Cmdlet(VerbsCommon.Remove, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(void))]
public sealed class RemoveMirrorDeviceCommand : HostCommand
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(MirrorNameCompleter))]
    public string[] Name { get; set; } = null!;

    /// <summary>Stop the copy jobs that use the mirror, instead of refusing (MirrorInUse).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var mirror in MirrorSelection.Select(this, Name))
        {
            if (CallOrWriteError<MirrorRemoval?>(ControlMethods.RemoveMirror, mirror.Name, Force.IsPresent) is { Closed: false } removal)
                WriteWarning($"Mirror '{mirror.Name}' is removed, but I/O to a leg has not returned after {removal.CloseTimeoutSeconds} s " +
                             "(a hung device?): its legs and log stay held until it does, then they are let go.");
        }
    }
}
