using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Nbd;

/// <summary>The limits an <see cref="NbdServer"/> holds every client to, so none can exhaust the process.</summary>
public sealed record NbdServerOptions
{
    /// <summary>Connections served at once; one more is closed as soon as it is accepted.</summary>
    public int MaxConnections { get; init; } = 64;

    /// <summary>Requests of one connection in flight (submitted, or answered and not yet sent); then it is not read.</summary>
    public int MaxRequestsPerConnection { get; init; } = 64;

    /// <summary>Aligned native buffer memory one connection's requests in flight may hold.</summary>
    public long MaxBufferBytesPerConnection { get; init; } = 64L * 1024 * 1024;

    /// <summary>A client that has not reached the transmission phase by then is dropped.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long stopping waits for requests in flight and their replies before it closes the sockets.</summary>
    public TimeSpan StopTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The server's own I/O queue: requests in flight on it (threads for the blocking backend).</summary>
    public int IoDepth { get; init; } = 32;

    public IoBackend IoBackend { get; init; } = IoBackend.Auto;

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConnections, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRequestsPerConnection, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBufferBytesPerConnection, 4096);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(HandshakeTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(StopTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(IoDepth, 1);
    }
}
