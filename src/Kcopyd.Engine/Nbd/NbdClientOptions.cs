namespace Kcopyd.Engine.Nbd;

/// <summary>How an <see cref="NbdDevice"/> talks to its server: its bounds in time and requests in flight.</summary>
public sealed record NbdClientOptions
{
    public static NbdClientOptions Default { get; } = new();

    /// <summary>
    /// Connecting and the whole handshake together: a server that accepts and never speaks, or a host that never
    /// answers, fails the open after this long instead of holding the caller.
    /// </summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long Dispose waits for requests in flight to end before it drops the connection under them (they end with EIO).</summary>
    public TimeSpan DisposeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Requests on the wire at once (a request the server's maximum size splits counts once per piece). Submit waits
    /// for room past this, as a local queue does when its ring is full.
    /// </summary>
    public int MaxInFlight { get; init; } = 64;

    /// <summary>
    /// Connections opened to a server that says NBD_FLAG_CAN_MULTI_CONN (one to any other), requests spread over
    /// them, as nbdcopy does. <see cref="MaxInFlight"/> counts per connection.
    /// </summary>
    public int Connections { get; init; } = 4;

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ConnectTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(DisposeTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxInFlight, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(Connections, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Connections, 16);
    }
}
