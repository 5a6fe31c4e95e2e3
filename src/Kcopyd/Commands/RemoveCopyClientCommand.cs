using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>
/// Removes a copy client and frees its pages. Refused while it has jobs running (ClientInUse) unless -Force, which
/// stops them first; the default client cannot be removed (ClientIsDefault).
/// </summary>
[Cmdlet(VerbsCommon.Remove, "CopyClient", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(CopyClientInfo))]
public sealed class RemoveCopyClientCommand : HostCommand
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(ClientNameCompleter))]
    public string[] Name { get; set; } = null!;

    /// <summary>Stop the client's running jobs, then remove it.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var client in ClientSelection.Select(this, Name))
        {
            if (CallOrWriteError<CopyClientInfo?>(ControlMethods.RemoveClient, client.Name, Force.IsPresent) is { } removed && PassThru) WriteObject(removed);
        }
    }
}
