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
            if (HostConnection.Get(start: false) != null) WarmSerializer();
        }
        catch (Exception)
        {
            // An unprivileged user, a host of another version, one going away: the cmdlet meets it and says so.
        }
    }

    /// <summary>
    /// The first copy's request and answer cross as JSON: their property accessors are emitted once, on first use
    /// of each type (about 20 ms each), and the emitted accessors are kept for the process; here, not in the cmdlet.
    /// </summary>
    private static void WarmSerializer()
    {
        var options = Kcopyd.Protocol.ControlProtocol.SerializerOptions;
        System.Text.Json.JsonSerializer.Serialize(new Kcopyd.Protocol.CopyJobRequest(), options);
        System.Text.Json.JsonSerializer.Deserialize<Kcopyd.Protocol.CopyJobInfo>(
            System.Text.Json.JsonSerializer.Serialize(new Kcopyd.Protocol.CopyJobInfo(), options), options);
    }
}
