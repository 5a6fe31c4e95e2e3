using System.Management.Automation;
using Kcopyd.Connection;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>
/// Stops the Kcopyd host. Refused while copy jobs run or mirrors are open, unless -Force: then jobs are stopped and
/// mirrors closed cleanly; mirrors keep their definitions and are assembled again when a host next starts.
/// </summary>
[Cmdlet(VerbsLifecycle.Stop, "KcopydHost", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(void))]
public sealed class StopKcopydHostCommand : HostCommand
{
    /// <summary>Stop running jobs and close open mirrors rather than refusing.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Seconds to wait for the host's process to end.</summary>
    [Parameter]
    [ValidateRange(1, 600)]
    public int TimeoutSeconds { get; set; } = 60;

    protected override void EndProcessing()
    {
        // A connection of its own that takes a host of any protocol version: StopHost is the same in all of them.
        IHostChannel? channel;
        try { channel = HostConnection.GetAnyVersion(); }
        catch (KcopydException ex) { ThrowTerminatingError(ErrorRecords.From(ex)); return; }
        if (channel == null)
        {
            WriteVerbose($"No Kcopyd host runs on '{HostConnection.RuntimeDirectory}'.");
            return;
        }
        int pid = channel.Host.ProcessId;
        try
        {
            if (!ShouldProcess($"Kcopyd host {pid} on {channel.Host.SocketPath}", Force ? "Stop its jobs, close its mirrors and stop it" : "Stop")) return;
            channel.Call<bool>(ControlProtocol.StopHost, [Force.IsPresent], null, () => Stopping);
        }
        catch (KcopydException ex) when (ex.ErrorId == "HostInUse")
        {
            WriteError(ErrorRecords.From(ex)); // a refusal: the host goes on, and so may the script (-ErrorAction decides)
            return;
        }
        catch (KcopydException ex)
        {
            ThrowTerminatingError(ErrorRecords.From(ex));
        }
        catch (OperationCanceledException)
        {
            throw new PipelineStoppedException();
        }
        finally
        {
            channel.Dispose();
        }
        HostConnection.Close();
        // Answered at once; the host then closes its mirrors (each bounded) and exits. Wait so the next cmdlet meets no half-stopped host.
        var deadline = DateTime.UtcNow.AddSeconds(TimeoutSeconds);
        while (ProcessExists(pid) && DateTime.UtcNow < deadline && !Stopping) Thread.Sleep(50);
        if (ProcessExists(pid))
            WriteWarning($"The Kcopyd host {pid} was asked to stop but still runs after {TimeoutSeconds} s (closing a mirror on a hung device?).");
    }

    private static bool ProcessExists(int pid) => Directory.Exists($"/proc/{pid}") && !IsZombie(pid);

    private static bool IsZombie(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/stat").Split(')').Last().TrimStart().StartsWith('Z'); }
        catch (IOException) { return false; }
    }
}
