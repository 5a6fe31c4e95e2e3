namespace Kcopyd.Engine;

/// <summary>Broad kind of an engine error; the cmdlets map it to a PowerShell ErrorCategory.</summary>
public enum KcopydErrorKind
{
    InvalidArgument,
    NotFound,
    ResourceBusy,
    AlreadyExists,
    PermissionDenied,
    DeviceError,
    InvalidOperation,
}

/// <summary>
/// An error the engine raises before touching data (bad region, missing device, device in use) or when a device
/// fails. <see cref="ErrorId"/> is stable: scripts and tests match on it.
/// </summary>
public sealed class KcopydException : Exception
{
    public KcopydException(string errorId, KcopydErrorKind kind, string message, object? target = null, Exception? inner = null)
        : base(message, inner)
    {
        ErrorId = errorId;
        Kind = kind;
        Target = target;
    }

    public string ErrorId { get; }

    public KcopydErrorKind Kind { get; }

    /// <summary>The path or object the error is about.</summary>
    public object? Target { get; }
}
