using System.Management.Automation;
using Kcopyd.Engine;
using Kcopyd.Engine.Copy;

namespace Kcopyd.Session;

/// <summary>
/// What every cmdlet that starts a copy job does around its own request: find the client, turn engine errors
/// into ErrorRecords with their stable ErrorIds, register the job, and with -Wait show progress to the end.
/// </summary>
internal static class JobLauncher
{
    /// <summary>
    /// Runs <paramref name="start"/>, which opens its devices through the scope and returns the started job,
    /// or null when ShouldProcess said no. Bad input is a terminating error and leaves no device open.
    /// </summary>
    public static CopyJob? Start(PSCmdlet cmdlet, string clientName, Func<CopyClient, DeviceScope, CopyJob?> start)
    {
        var devices = new DeviceScope(cmdlet);
        try
        {
            var job = start(KcopydSession.GetClient(clientName), devices);
            if (job == null)
            {
                devices.CloseAll();
                return null;
            }
            KcopydSession.AddJob(job);
            return job;
        }
        catch (KcopydException ex)
        {
            devices.CloseAll();
            cmdlet.ThrowTerminatingError(ErrorRecords.From(ex));
        }
        catch (ItemNotFoundException ex)
        {
            devices.CloseAll();
            cmdlet.ThrowTerminatingError(new ErrorRecord(ex, "ClientNotFound", ErrorCategory.ObjectNotFound, clientName));
        }
        return null;
    }

    /// <summary>With <paramref name="wait"/>, shows progress until the job ends and reports a failure; then outputs the job.</summary>
    public static void Output(PSCmdlet cmdlet, CopyJob job, bool wait, string activity)
    {
        if (wait)
        {
            JobProgress.WaitWithProgress(cmdlet, job, activity, () => cmdlet.Stopping);
            foreach (string warning in job.Warnings) cmdlet.WriteWarning(warning);
            if (job.State == CopyJobState.Failed)
            {
                var category = job.ReadError ? ErrorCategory.ReadError : ErrorCategory.WriteError;
                cmdlet.WriteError(ErrorRecords.Create(job.ReadError ? "CopyReadFailed" : "CopyWriteFailed", category, job, job.Error ?? "The copy failed."));
            }
        }
        cmdlet.WriteObject(job);
    }
}
