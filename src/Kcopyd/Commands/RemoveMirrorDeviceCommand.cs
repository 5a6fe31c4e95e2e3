using System.Management.Automation;
using Kcopyd.Engine;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Flushes a mirror device, stops its recovery and releases its legs.</summary>
[Cmdlet(VerbsCommon.Remove, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(void))]
public sealed class RemoveMirrorDeviceCommand : PSCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    public string[] Name { get; set; } = null!;

    /// <summary>Stop the copy jobs that use the mirror, instead of refusing (MirrorInUse).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var mirror in MirrorSelection.Select(this, Name))
        {
            if (!ShouldProcess(mirror.Name, "Flush, stop recovery and release the legs")) continue;
            try
            {
                if (!KcopydSession.RemoveMirror(mirror.Name, Force))
                    WriteWarning($"Mirror '{mirror.Name}' is removed, but I/O to a leg has not returned after {KcopydSession.CloseTimeout.TotalSeconds:0} s " +
                                 "(a hung device?): its legs and log stay held until it does, then they are let go.");
            }
            catch (KcopydException ex)
            {
                WriteError(ErrorRecords.From(ex));
            }
        }
    }
}
