using System.Net;
using System.Net.Sockets;

namespace Kcopyd.Engine.Nbd;

/// <summary>Connects to an NBD URI's server, bounded by the open's deadline, as a blocking socket.</summary>
internal static class NbdClientSocket
{
    public static Socket Connect(NbdUri uri, string target, NbdClientDeadline deadline)
    {
        if (uri.Transport == NbdTransport.Unix)
        {
            UnixDomainSocketEndPoint endpoint;
            try
            {
                endpoint = new UnixDomainSocketEndPoint(uri.SocketPath!);
            }
            catch (ArgumentException ex)
            {
                throw NbdClientErrors.ConnectFailed(target, uri.Address, "the socket path is too long for a Unix socket.", ex);
            }
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                ConnectBounded(socket, endpoint, deadline);
                return socket;
            }
            catch (Exception ex)
            {
                socket.Dispose();
                throw Failure(uri, target, deadline, ex);
            }
        }

        Exception? last = null;
        foreach (var address in Resolve(uri, target, deadline))
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                ConnectBounded(socket, new IPEndPoint(address, uri.Port), deadline);
                // A request header and its payload go in two sends: Nagle would hold the header for an ACK.
                socket.NoDelay = true;
                SetKeepAlive(socket);
                return socket;
            }
            catch (Exception ex) when (ex is SocketException or TimeoutException)
            {
                socket.Dispose();
                last = ex;
                if (deadline.Expired) break;
            }
        }
        throw Failure(uri, target, deadline, last ?? new SocketException((int)SocketError.HostNotFound));
    }

    private static IPAddress[] Resolve(NbdUri uri, string target, NbdClientDeadline deadline)
    {
        if (IPAddress.TryParse(uri.Host, out var literal)) return [literal];
        try
        {
            var lookup = Dns.GetHostAddressesAsync(uri.Host!);
            // A resolver that never answers must not hold the open past its bound.
            if (!lookup.Wait(deadline.Remaining)) throw NbdClientErrors.ConnectFailed(target, uri.Address, $"resolving '{uri.Host}' took longer than {deadline.Timeout.TotalSeconds:0.#} s.");
            return lookup.Result.Length > 0 ? lookup.Result
                : throw NbdClientErrors.ConnectFailed(target, uri.Address, $"'{uri.Host}' has no address.");
        }
        catch (AggregateException ex) when (ex.InnerException is SocketException socketError)
        {
            throw NbdClientErrors.ConnectFailed(target, uri.Address, $"cannot resolve '{uri.Host}': {socketError.Message}.", socketError);
        }
    }

    /// <summary>
    /// A non-blocking connect and a poll, then back to blocking. Not ConnectAsync: one async operation leaves a
    /// socket in .NET's emulated-blocking mode for good, and every later Send and Receive pays an epoll round trip.
    /// </summary>
    private static void ConnectBounded(Socket socket, EndPoint endpoint, NbdClientDeadline deadline)
    {
        socket.Blocking = false;
        try
        {
            socket.Connect(endpoint);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress or SocketError.AlreadyInProgress)
        {
            long micros = Math.Max(1, (long)deadline.Remaining.TotalMicroseconds);
            if (!socket.Poll((int)Math.Min(micros, int.MaxValue), SelectMode.SelectWrite))
                throw new TimeoutException();
            int error = (int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error)!;
            if (error != 0) throw new SocketException(error);
        }
        socket.Blocking = true;
    }

    private static void SetKeepAlive(Socket socket)
    {
        // A peer that vanished (a host powered off) is noticed in about a minute instead of never.
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, 30);
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, 10);
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 3);
    }

    private static KcopydException Failure(NbdUri uri, string target, NbdClientDeadline deadline, Exception ex) => ex switch
    {
        KcopydException known => known,
        TimeoutException => NbdClientErrors.ConnectFailed(target, uri.Address, $"no answer within {deadline.Timeout.TotalSeconds:0.#} s.", ex),
        SocketException socket => NbdClientErrors.ConnectFailed(target, uri.Address, Reason(uri, socket), socket),
        _ => NbdClientErrors.ConnectFailed(target, uri.Address, ex.Message, ex),
    };

    /// <summary>
    /// .NET words a missing Unix socket as "Cannot assign requested address" (ENOENT becomes AddressNotAvailable):
    /// say what the user can act on instead.
    /// </summary>
    private static string Reason(NbdUri uri, SocketException ex)
    {
        bool file = uri.Transport == NbdTransport.Unix && uri.SocketPath![0] != '\0';
        if (file && !File.Exists(uri.SocketPath)) return "there is no socket at that path.";
        if (ex.SocketErrorCode == SocketError.ConnectionRefused)
            return file ? "nothing listens on that socket (connection refused)." : "nothing listens on that port (connection refused).";
        return ex.Message.TrimEnd('.') + ".";
    }
}
