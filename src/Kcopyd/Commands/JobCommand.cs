using System.Management.Automation;

namespace Kcopyd.Commands;

/// <summary>What every cmdlet that starts a copy job takes: the client it runs on, -Wait, and -Force.</summary>
public abstract class JobCommand : HostCommand
{
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string Client { get; set; } = "default";

    /// <summary>This job copies at most this many bytes per second, on top of its client's throttle; 0 (the default) is unlimited.</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long BytesPerSecond { get; set; }

    /// <summary>Show progress until the job ends, then output it. Ctrl+C stops waiting; the job goes on in the host.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    /// <summary>Write to devices that are mounted or held open exclusively by another program.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }
}
