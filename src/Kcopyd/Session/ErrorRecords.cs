using System.Management.Automation;
using Kcopyd.Engine;

namespace Kcopyd.Session;

/// <summary>Turns engine errors into ErrorRecords with stable ErrorIds.</summary>
internal static class ErrorRecords
{
    public static ErrorRecord From(KcopydException ex) => new(ex, ex.ErrorId, Category(ex.Kind), ex.Target);

    public static ErrorRecord Create(string errorId, ErrorCategory category, object? target, string message)
        => new(new InvalidOperationException(message), errorId, category, target);

    private static ErrorCategory Category(KcopydErrorKind kind) => kind switch
    {
        KcopydErrorKind.InvalidArgument => ErrorCategory.InvalidArgument,
        KcopydErrorKind.NotFound => ErrorCategory.ObjectNotFound,
        KcopydErrorKind.ResourceBusy => ErrorCategory.ResourceBusy,
        KcopydErrorKind.AlreadyExists => ErrorCategory.ResourceExists,
        KcopydErrorKind.PermissionDenied => ErrorCategory.PermissionDenied,
        KcopydErrorKind.DeviceError => ErrorCategory.DeviceError,
        KcopydErrorKind.InvalidOperation => ErrorCategory.InvalidOperation,
        _ => ErrorCategory.NotSpecified,
    };
}
