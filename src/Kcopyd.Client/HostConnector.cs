using System.Net.Sockets;
using Kcopyd.Engine;
using Kcopyd.Protocol;

namespace Kcopyd.Client;

/// <summary>Finds the host on its socket, or starts one when none is running (so a fresh machine just works).</summary>
public static class HostConnector
{
    /// <summary>
    /// The module calls this through its load context; null when no host runs and <paramref name="start"/> is false.
    /// <paramref name="anyVersion"/>: a host of another protocol version is connected to as well (to be stopped).
    /// </summary>
    public static IHostChannel? Connect(string runtimeDirectory, bool start, bool anyVersion)
    {
        string socketPath = Path.Combine(runtimeDirectory, ControlProtocol.SocketName);
        // Root is never refused by a host, so a host that closes on root unanswered is on its way out: a few seconds
        // for it to go, then the next one is started (or is there already).
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (TryConnect(socketPath) is { } socket)
        {
            try
            {
                return HostChannel.Open(socket, socketPath, anyVersion);
            }
            catch (ClosedUnansweredException) when (Tmds.Linux.LibC.geteuid() == 0 && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(250);
            }
            catch (ClosedUnansweredException) when (Tmds.Linux.LibC.geteuid() == 0)
            {
                throw new KcopydException("HostNotAnswering", KcopydErrorKind.DeviceError,
                    $"The Kcopyd host on '{socketPath}' has closed every connection unanswered for 20 s: it is going away and its I/O does not drain " +
                    "(a hung device?). Its host.log says more.", socketPath);
            }
            catch (ClosedUnansweredException)
            {
                throw new KcopydException("HostAccessDenied", KcopydErrorKind.PermissionDenied,
                    $"The Kcopyd host on '{socketPath}' closed the connection unanswered: only root and the host's own user may drive it.", socketPath);
            }
        }
        if (!start) return null;
        string? failure = HostLauncher.Start(runtimeDirectory, () => File.Exists(socketPath) && Answers(socketPath));
        // Another cmdlet may have started a host at the same moment: its host is as good as ours.
        if (TryConnect(socketPath) is { } started) return HostChannel.Open(started, socketPath);
        bool unprivileged = Tmds.Linux.LibC.geteuid() != 0;
        throw new KcopydException(unprivileged ? "HostAccessDenied" : "HostStartFailed",
            unprivileged ? KcopydErrorKind.PermissionDenied : KcopydErrorKind.InvalidOperation,
            $"No Kcopyd host runs on '{socketPath}' and none could be started: {(failure ?? "it did not listen").TrimEnd('.')}." +
            (unprivileged ? " Kcopyd drives block devices, so its host is root's: run this as root." : ""), socketPath);
    }

    private static bool Answers(string socketPath)
    {
        using var socket = TryConnect(socketPath);
        return socket != null;
    }

    private static Socket? TryConnect(string socketPath)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            return socket;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AccessDenied)
        {
            socket.Dispose();
            throw new KcopydException("HostAccessDenied", KcopydErrorKind.PermissionDenied,
                $"Permission denied on the Kcopyd host's socket '{socketPath}': only root (or the host's own user) may drive it.", socketPath);
        }
        catch (SocketException)
        {
            // No socket, or one a dead host left: no host runs there.
            socket.Dispose();
            return null;
        }
    }
}
