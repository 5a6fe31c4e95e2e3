using System.Diagnostics;
using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine.Mirror;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Waits until mirror devices are in sync, showing recovery progress; a timeout is an error.</summary>
[Cmdlet(VerbsLifecycle.Wait, "MirrorDevice")]
[OutputType(typeof(MirrorInfo))]
public sealed class WaitMirrorDeviceCommand : HostCommand
{
    private const int IntervalMilliseconds = 250;
    private readonly List<MirrorInfo> _mirrors = [];

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(MirrorNameCompleter))]
    public string[] Name { get; set; } = null!;

    /// <summary>Seconds to wait at most; by default, for ever.</summary>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int TimeoutSeconds { get; set; } = -1;

    protected override void ProcessRecord() => _mirrors.AddRange(MirrorSelection.Select(this, Name));

    protected override void EndProcessing()
    {
        var deadline = TimeoutSeconds < 0 ? TimeSpan.MaxValue : TimeSpan.FromSeconds(TimeoutSeconds);
        var elapsed = Stopwatch.StartNew();
        foreach (var mirror in _mirrors)
        {
            var progress = new ProgressRecord(1, $"Waiting for mirror '{mirror.Name}' to be in sync", "Recovering");
            MirrorInfo status;
            MirrorWait? wait;
            // A mirror removed meanwhile is an error of its own; the others are still waited for.
            while ((wait = CallOrWriteError<MirrorWait>(ControlMethods.WaitMirror, mirror.Name, IntervalMilliseconds)) is { InSync: false })
            {
                status = wait.Status;
                if (status.State == nameof(MirrorState.Degraded) && status.RecoveringRegions == 0)
                {
                    // A dead leg keeps regions out of sync until it is replaced: waiting longer cannot help.
                    WriteWarning($"Mirror '{mirror.Name}' is degraded: {string.Join(", ", status.Legs.Where(l => l.Health is nameof(LegHealth.Dead) or nameof(LegHealth.Hung)).Select(l => $"{l.Path} {l.Health.ToLowerInvariant()}"))}.");
                    break;
                }
                if (elapsed.Elapsed >= deadline)
                {
                    WriteError(ErrorRecords.Create("MirrorSyncTimeout", ErrorCategory.OperationTimeout, status,
                        $"Mirror '{mirror.Name}' is not in sync after {TimeoutSeconds} s: {status.InSyncRegions} of {status.RegionCount} regions."));
                    break;
                }
                progress.StatusDescription = $"{status.InSyncRegions} of {status.RegionCount} regions in sync";
                progress.PercentComplete = (int)Math.Clamp(status.SyncPercent, 0, 100);
                WriteProgress(progress);
            }
            progress.RecordType = ProgressRecordType.Completed;
            WriteProgress(progress);
            if (wait != null) WriteObject(wait.Status);
        }
    }
}
