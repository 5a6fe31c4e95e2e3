namespace Kcopyd.Engine.Nbd;

/// <summary>A snapshot of an <see cref="NbdServer"/>'s counters since it started.</summary>
/// <param name="Connections">Connections open now (handshake or transmission).</param>
/// <param name="TotalConnections">Connections accepted, including those refused for the connection limit.</param>
/// <param name="RefusedConnections">Connections closed at once because <see cref="NbdServerOptions.MaxConnections"/> were open.</param>
/// <param name="FailedConnections">Connections ended by a protocol violation, a timeout or a socket error.</param>
/// <param name="Requests">Transmission requests received (valid or not; DISC included).</param>
/// <param name="RequestErrors">Requests answered with an error.</param>
/// <param name="BytesRead">Bytes read from the device and sent to clients.</param>
/// <param name="BytesWritten">Bytes clients wrote to the device.</param>
public readonly record struct NbdServerStatistics(
    int Connections,
    long TotalConnections,
    long RefusedConnections,
    long FailedConnections,
    long Requests,
    long RequestErrors,
    long BytesRead,
    long BytesWritten);
