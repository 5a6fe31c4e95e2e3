namespace Kcopyd.Connection;

/// <summary>
/// Connects to a running host in the background as the module loads. The first connection loads the RPC client
/// and compiles its path (about a tenth of a second); done here, it runs beside PowerShell finding and binding the
/// first cmdlet instead of after it. It never starts a host and never reports anything: the first cmdlet that
/// needs the host connects (or starts one, or says why it cannot) as it would have without this.
/// </summary>
public sealed class ModuleWarmUp : System.Management.Automation.IModuleAssemblyInitializer
{
    public void OnImport()
    {
        // Only root drives the host (its own user aside): anyone else would only add a refusal to host.log.
        if (Tmds.Linux.LibC.geteuid() != 0) return;
        var thread = new Thread(Connect) { IsBackground = true, Name = "Kcopyd connect" };
        thread.Start();
    }

    private static void Connect()
    {
        try
        {
            HostConnection.Get(start: false);
        }
        catch (Exception)
        {
            // An unprivileged user, a host of another version, one going away: the cmdlet meets it and says so.
        }
    }
}
