using System.Runtime.InteropServices;
using System.Net.Sockets;

namespace Kcopyd.Host;

/// <summary>The process at the other end of a Unix socket, as the kernel recorded it at connect (SO_PEERCRED).</summary>
internal readonly record struct PeerCredentials(int ProcessId, uint UserId, uint GroupId)
{
    private const int SolSocket = 1;
    private const int SoPeerCred = 17;

    public static PeerCredentials Of(Socket socket)
    {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        Span<byte> ucred = stackalloc byte[12];
        int length = socket.GetRawSocketOption(SolSocket, SoPeerCred, ucred);
        if (length != ucred.Length) throw new SocketException((int)SocketError.ProtocolOption);
        return new PeerCredentials(
            MemoryMarshal.Read<int>(ucred), MemoryMarshal.Read<uint>(ucred[4..]), MemoryMarshal.Read<uint>(ucred[8..]));
    }
}
