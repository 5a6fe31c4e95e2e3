using Kcopyd.Protocol;

namespace Kcopyd.Connection;

/// <summary>
/// The module's one connection to the host of KCOPYD_RUNTIME_DIR (default /run/kcopyd), made at the first cmdlet
/// that needs it and made again when the host went away or the variable names another directory.
/// </summary>
internal static class HostConnection
{
    public const string DefaultRuntimeDirectory = "/run/kcopyd";
    public const string RuntimeDirectoryVariable = "KCOPYD_RUNTIME_DIR";

    private static readonly object s_lock = new();
    private static readonly Lazy<Func<string, bool, bool, IHostChannel?>> s_connect = new(
        () => new ClientLoadContext(Path.GetDirectoryName(typeof(HostConnection).Assembly.Location)!).LoadConnector());
    private static IHostChannel? s_channel;
    private static string? s_directory;

    public static string RuntimeDirectory
    {
        get
        {
            string? chosen = Environment.GetEnvironmentVariable(RuntimeDirectoryVariable);
            return Path.GetFullPath(string.IsNullOrEmpty(chosen) ? DefaultRuntimeDirectory : chosen);
        }
    }

    /// <summary>The connection; with <paramref name="start"/> false, null when no host runs (none is started).</summary>
    public static IHostChannel? Get(bool start = true)
    {
        lock (s_lock)
        {
            string directory = RuntimeDirectory;
            if (s_channel is { IsConnected: true } && directory == s_directory) return s_channel;
            Close();
            s_channel = s_connect.Value(directory, start, false);
            s_directory = directory;
            return s_channel;
        }
    }

    /// <summary>A connection of its own to whatever host runs, of any protocol version (only to stop it); null if none.</summary>
    public static IHostChannel? GetAnyVersion() => s_connect.Value(RuntimeDirectory, false, true);

    public static void Close()
    {
        lock (s_lock)
        {
            s_channel?.Dispose();
            s_channel = null;
        }
    }
}

/// <summary>Lets go of the connection when the module is removed; the host and what it holds go on.</summary>
public sealed class ModuleCleanup : System.Management.Automation.IModuleAssemblyCleanup
{
    public void OnRemove(System.Management.Automation.PSModuleInfo psModuleInfo) => HostConnection.Close();
}
