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
        if (TryConnect(socketPath) is { } socket) return HostChannel.Open(socket, socketPath, anyVersion);
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
