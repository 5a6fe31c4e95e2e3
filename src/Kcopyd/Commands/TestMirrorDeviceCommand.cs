using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Engine.Mirror;
using Kcopyd.Protocol;

namespace Kcopyd.Commands;

/// <summary>
/// Compares a mirror's legs region by region (md's check) and returns the regions that differ; -Repair rewrites
/// them from the default leg. Regions out of sync are skipped: the recovery copies them anyway.
/// </summary>
[Cmdlet(VerbsDiagnostic.Test, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(RegionMismatchInfo))]
public sealed class TestMirrorDeviceCommand : HostCommand
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(MirrorNameCompleter))]
    public string Name { get; set; } = null!;

    /// <summary>Rewrite the regions that differ with the default leg's bytes.</summary>
    [Parameter]
    public SwitchParameter Repair { get; set; }

    protected override void ProcessRecord()
    {
        try
        {
            // The host compares the legs and sends progress; Ctrl+C cancels the scrub there and returns here at once.
            if (CallOrWriteError<RegionMismatchInfo[]?>(ControlMethods.TestMirror, Name, Repair.IsPresent) is { } found) WriteObject(found, enumerateCollection: true);
        }
        catch (PipelineStoppedException)
        {
            Host.UI.WriteWarningLine("Test-MirrorDevice stopped; regions not compared yet were left as they are.");
            throw;
        }
    }
}
