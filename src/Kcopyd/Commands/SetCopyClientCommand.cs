using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Changes a copy client's throttle while its jobs run; the new limit applies from their next chunk on.</summary>
[Cmdlet(VerbsCommon.Set, "CopyClient", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(CopyClientInfo))]
public sealed class SetCopyClientCommand : HostCommand
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(ClientNameCompleter))]
    public string[] Name { get; set; } = null!;

    /// <summary>The client's jobs together copy at most this many bytes per second; 0 lifts the limit.</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long BytesPerSecond { get; set; }

    /// <summary>The share of time the client may keep I/O in flight (1 to 100; 100 lifts the limit).</summary>
    [Parameter]
    [ValidateRange(1, 100)]
    public int DutyCyclePercent { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        var bound = MyInvocation.BoundParameters;
        foreach (var client in ClientSelection.Select(this, Name))
        {
            var change = new ClientChange
            {
                Name = client.Name,
                BytesPerSecond = bound.ContainsKey(nameof(BytesPerSecond)) ? BytesPerSecond : null,
                DutyCyclePercent = bound.ContainsKey(nameof(DutyCyclePercent)) ? DutyCyclePercent : null,
            };
            if (CallOrWriteError<CopyClientInfo?>(ControlMethods.SetClient, change) is { } changed && PassThru) WriteObject(changed);
        }
    }
}
