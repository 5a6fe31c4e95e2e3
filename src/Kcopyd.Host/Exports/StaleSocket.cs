using System.Net.Sockets;
using Kcopyd.Host.State;

namespace Kcopyd.Host.Exports;

/// <summary>The Unix socket a killed host leaves behind: a socket of ours on which nobody answers.</summary>
internal static class StaleSocket
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(2);

    /// <summary>True when it was such a socket and is now removed; anything else (a live server's socket, a file, a link) stays.</summary>
    public static bool RemoveIfStale(string path)
    {
        if (Posix.Lstat(path, out var st) != 0 || Posix.Type(st) != (uint)Tmds.Linux.LibC.S_IFSOCK || !Posix.IsOurs(st)) return false;
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            // Bounded: a live server whose backlog is full would keep a blocking connect waiting.
            if (!probe.ConnectAsync(new UnixDomainSocketEndPoint(path)).Wait(Bound)) return false;
            return false; // somebody answers: it is in use
        }
        catch (AggregateException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
        {
            File.Delete(path);
            return true;
        }
    }
}
