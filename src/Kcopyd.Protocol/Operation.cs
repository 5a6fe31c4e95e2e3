namespace Kcopyd.Protocol;

/// <summary>What the host tells the cmdlet during a call, which the cmdlet writes to its own streams.</summary>
public enum MessageKind
{
    Warning,
    Verbose,
}

/// <summary>A progress record the host sends during a long call (Test-MirrorDevice).</summary>
public sealed class ProgressInfo
{
    public int ActivityId { get; set; } = 1;
    public string Activity { get; set; } = "";
    public string Status { get; set; } = "";
    public int PercentComplete { get; set; } = -1;
    public bool Completed { get; set; }
}

/// <summary>An error the host raised, with the stable ErrorId the cmdlet puts on its ErrorRecord.</summary>
public sealed class RemoteError
{
    public string ErrorId { get; set; } = "";
    public Kcopyd.Engine.KcopydErrorKind Kind { get; set; }
    public string Message { get; set; } = "";
    public string? Target { get; set; }

    public static RemoteError Of(Kcopyd.Engine.KcopydException e)
        => new() { ErrorId = e.ErrorId, Kind = e.Kind, Message = e.Message, Target = e.Target?.ToString() };

    public Kcopyd.Engine.KcopydException ToException() => new(ErrorId, Kind, Message, Target);
}

/// <summary>The cmdlet's side of a call: the host asks it to confirm, and it writes what the host says.</summary>
public interface IOperationSink
{
    bool ShouldProcess(string target, string action);

    void Write(MessageKind kind, string text);

    void Progress(ProgressInfo progress);

    /// <summary>A non-terminating error of the host's (as a KcopydException, so it carries its ErrorId).</summary>
    void Error(Kcopyd.Engine.KcopydException error);
}

/// <summary>A connection to the host, as the module uses it (the isolated client implements it).</summary>
public interface IHostChannel : IDisposable
{
    /// <summary>What the host said when the connection was made.</summary>
    HostInfo Host { get; }

    /// <summary>False once the host went away (killed, stopped): the next call connects anew.</summary>
    bool IsConnected { get; }

    /// <summary>
    /// Calls a method on the calling thread, which meanwhile answers the host's questions through the sink. When
    /// <paramref name="stopping"/> turns true the call is cancelled and, whatever the host does, this returns within
    /// seconds by throwing OperationCanceledException. A host error is a KcopydException with the host's ErrorId.
    /// </summary>
    T Call<T>(string method, object?[] arguments, IOperationSink? sink, Func<bool> stopping);
}
