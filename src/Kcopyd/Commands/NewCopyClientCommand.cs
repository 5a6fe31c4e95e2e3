using System.Management.Automation;
using Kcopyd.Protocol;

namespace Kcopyd.Commands;

/// <summary>
/// Makes a copy client in the host: its own worker thread, job lists, lock and page pool (allocated now), so its
/// jobs never wait for another client's, and a slow device stalls only the client it is copied by.
/// </summary>
[Cmdlet(VerbsCommon.New, "CopyClient", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(CopyClientInfo))]
public sealed class NewCopyClientCommand : HostCommand
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = null!;

    /// <summary>Pages of 64 KiB in the client's pool: the most memory its jobs hold at once (default 256, 16 MiB).</summary>
    [Parameter]
    [ValidateRange(1, 65536)]
    public int PageCount { get; set; }

    /// <summary>Big jobs are split into sub-jobs of this many bytes (a multiple of 64 KiB that fits the pool; default 2 MiB).</summary>
    [Parameter]
    [ValidateRange(65536, int.MaxValue)]
    public int SubJobSize { get; set; }

    /// <summary>The client's jobs together copy at most this many bytes per second; 0 (the default) is unlimited.</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long BytesPerSecond { get; set; }

    /// <summary>The share of time the client may keep I/O in flight, as dm-kcopyd's throttle (1 to 100; 100 is unlimited).</summary>
    [Parameter]
    [ValidateRange(1, 100)]
    public int DutyCyclePercent { get; set; } = 100;

    protected override void ProcessRecord()
    {
        var request = new NewClientRequest
        {
            Name = Name,
            PageCount = MyInvocation.BoundParameters.ContainsKey(nameof(PageCount)) ? PageCount : null,
            SubJobSize = MyInvocation.BoundParameters.ContainsKey(nameof(SubJobSize)) ? SubJobSize : null,
            BytesPerSecond = BytesPerSecond,
            DutyCyclePercent = DutyCyclePercent,
        };
        if (CallOrWriteError<CopyClientInfo?>(ControlMethods.NewClient, request) is { } client) WriteObject(client);
    }
}
