namespace Kcopyd.Host;

/// <summary>
/// The host cannot start; the message says why in words an admin can act on. <see cref="LockHeld"/>: another host
/// holds the state or runtime directory, which a host killed a moment ago does until its last I/O has ended.
/// </summary>
public sealed class HostStartException(string message, bool lockHeld = false) : Exception(message)
{
    public bool LockHeld { get; } = lockHeld;
}
