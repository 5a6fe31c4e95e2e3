using System.Management.Automation;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>What every cmdlet that starts a copy job takes: the client it runs on, -Wait, and -Force.</summary>
public abstract class JobCommand : PSCmdlet
{
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string Client { get; set; } = KcopydSession.DefaultClientName;

    /// <summary>Show progress until the job ends, then output it.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    /// <summary>Write to devices that are mounted or held open exclusively by another program.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }
}
