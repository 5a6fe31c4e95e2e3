namespace Kcopyd.Protocol;

/// <summary>The control socket's protocol: JSON-RPC 2.0 (StreamJsonRpc, header-delimited JSON) over a Unix socket.</summary>
public static class ControlProtocol
{
    /// <summary>
    /// How both ends write and read the objects (System.Text.Json, which is in the framework and starts fast):
    /// property names as they are in C#, read without regard to case, enums as numbers.
    /// </summary>
    public static System.Text.Json.JsonSerializerOptions SerializerOptions { get; } = new()
    {
        PropertyNamingPolicy = null,
        PropertyNameCaseInsensitive = true,
    };

    /// <summary>Raised whenever a method's meaning or shape changes; a client refuses a host of another version.</summary>
    public const int Version = 5;

    /// <summary>JSON-RPC's range for application errors: every error the host raises has this code and a RemoteError as data.</summary>
    public const int KcopydErrorCode = -32000;

    /// <summary>The socket's name inside the runtime directory.</summary>
    public const string SocketName = "control.sock";

    /// <summary>Keeps its name and the ProtocolVersion property in every version, so any client can ask it first.</summary>
    public const string GetHost = "GetHost";

    /// <summary>Keeps its name and its one argument (force) in every version, so a client can stop a host it cannot speak to.</summary>
    public const string StopHost = "StopHost";

    // What the host asks of the cmdlet while an operation runs (the first argument of each is the call's id).
    public const string ShouldProcess = "Operation.ShouldProcess";
    public const string Write = "Operation.Write";
    public const string Progress = "Operation.Progress";
    public const string Error = "Operation.Error";
}

/// <summary>
/// The methods a cmdlet calls. Every one but GetHost and StopHost takes the call's id first, which the host
/// names when it asks the cmdlet something during that call (ShouldProcess, a warning, progress).
/// </summary>
public static class ControlMethods
{
    public const string GetHostStatus = "GetHostStatus";
    public const string SetHost = "SetHost";

    public const string StartCopy = "StartCopy";
    public const string StartZero = "StartZero";
    /// <summary>The admin's jobs (positive ids); given ids, the internal jobs of those ids too.</summary>
    public const string GetJobs = "GetJobs";
    /// <summary>The jobs the host runs for itself (mirror recovery copies, negative ids): Get-CopyJob -IncludeInternal.</summary>
    public const string GetInternalJobs = "GetInternalJobs";
    public const string WaitJob = "WaitJob";
    public const string StopJob = "StopJob";
    public const string RemoveJob = "RemoveJob";

    public const string NewClient = "NewClient";
    public const string GetClients = "GetClients";
    public const string SetClient = "SetClient";
    public const string RemoveClient = "RemoveClient";

    public const string NewMirror = "NewMirror";
    public const string GetMirrors = "GetMirrors";
    public const string WaitMirror = "WaitMirror";
    public const string SetMirror = "SetMirror";
    public const string RemoveMirror = "RemoveMirror";
    public const string RepairMirror = "RepairMirror";
    public const string ReplaceLeg = "ReplaceLeg";
    public const string AddLeg = "AddLeg";
    public const string RemoveLeg = "RemoveLeg";
    public const string TestMirror = "TestMirror";

    public const string PublishMirror = "PublishMirror";
    public const string UnpublishMirror = "UnpublishMirror";
    public const string GetExports = "GetExports";

    public const string CompareRegion = "CompareRegion";
    public const string HashRegion = "HashRegion";
}
