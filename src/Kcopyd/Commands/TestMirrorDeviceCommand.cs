using System.Management.Automation;
using Kcopyd.Engine;
using Kcopyd.Engine.Mirror;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>
/// Compares a mirror's legs region by region (md's check) and returns the regions that differ; -Repair rewrites
/// them from the default leg. Regions out of sync are skipped: the recovery copies them anyway.
/// </summary>
[Cmdlet(VerbsDiagnostic.Test, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(RegionMismatch))]
public sealed class TestMirrorDeviceCommand : PSCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = null!;

    /// <summary>Rewrite the regions that differ with the default leg's bytes.</summary>
    [Parameter]
    public SwitchParameter Repair { get; set; }

    protected override void EndProcessing()
    {
        try
        {
            var mirror = KcopydSession.GetMirror(Name);
            string action = Repair ? "Compare the legs and rewrite the regions that differ from the default leg" : "Compare the legs region by region";
            // Only -Repair writes; a plain check runs under -WhatIf too, as it changes nothing.
            if (Repair && !ShouldProcess(mirror.Name, action)) return;
            var progress = new ProgressRecord(1, $"{(Repair ? "Repairing" : "Checking")} mirror '{mirror.Name}'", "Comparing legs");
            int shown = -1;
            using var stopping = new CancellationTokenSource();
            var found = RunUntilStopped(() => mirror.Scrub(Repair, region =>
            {
                int percent = (int)(100 * (region + 1) / mirror.RegionCount);
                if (percent == shown) return;
                shown = percent;
                progress.PercentComplete = percent;
                progress.StatusDescription = $"Region {region + 1} of {mirror.RegionCount}";
                WriteProgressFromWorker(progress);
            }, stopping.Token), stopping);
            progress.RecordType = ProgressRecordType.Completed;
            WriteProgress(progress);
            if (found == null) return;
            WriteVerbose($"Mirror '{mirror.Name}': {found.Count} of {mirror.RegionCount} regions differ between legs (regions out of sync were skipped; the recovery copies them).");
            WriteObject(found, enumerateCollection: true);
            if (found.Count > 0 && !Repair)
                WriteWarning($"{found.Count} region(s) of mirror '{mirror.Name}' differ between legs; Test-MirrorDevice -Repair rewrites them from the default leg '{mirror.DefaultLeg.Name}'.");
        }
        catch (KcopydException ex)
        {
            ThrowTerminatingError(ErrorRecords.From(ex));
        }
    }

    private readonly Queue<ProgressRecord> _progress = new();

    private void WriteProgressFromWorker(ProgressRecord record)
    {
        lock (_progress) _progress.Enqueue(record);
    }

    /// <summary>The scrub runs on a worker so the pipeline thread can show progress and see Ctrl+C.</summary>
    private IReadOnlyList<RegionMismatch>? RunUntilStopped(Func<IReadOnlyList<RegionMismatch>> scrub, CancellationTokenSource stopping)
    {
        var task = Task.Run(scrub);
        while (!task.Wait(200))
        {
            if (Stopping)
            {
                // The scrub stops waiting on a hung leg at once; its I/O left behind ends on its own.
                stopping.Cancel();
                try { task.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
                WriteWarning($"Test-MirrorDevice stopped; regions not compared yet were left as they are.");
                return null;
            }
            ProgressRecord? last = null;
            lock (_progress)
                while (_progress.Count > 0) last = _progress.Dequeue();
            if (last != null) WriteProgress(last);
        }
        try
        {
            return task.GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }
}
