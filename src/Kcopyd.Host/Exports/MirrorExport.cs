using System.Net.Sockets;
using Kcopyd.Engine.Nbd;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Exports;

/// <summary>A mirror served over NBD on one address, and the block device attached to it, if any.</summary>
internal sealed class MirrorExport(string mirror, NbdServer server, string uri, string? unixSocket, string? listen)
{
    public string Mirror { get; } = mirror;

    public NbdServer Server { get; } = server;

    public string Uri { get; } = uri;

    public string? UnixSocket { get; } = unixSocket;

    public BlockAttachment? Attachment { get; private set; }

    /// <summary>Connections the attached block device made (nbdfuse opens several when multi-conn is offered).</summary>
    public int AttachmentConnections { get; private set; }

    /// <summary>NBD clients other than the export's own block device.</summary>
    public int OtherClients => Math.Max(0, Connections - AttachmentConnections);

    public void Attach(string folder)
    {
        Attachment = BlockAttachment.Attach(Uri, folder);
        AttachmentConnections = Server.ConnectionCount;
    }

    public int Connections => Server.ConnectionCount;

    public ExportInfo Info()
    {
        var statistics = Server.GetStatistics();
        return new ExportInfo
        {
            Mirror = Mirror,
            Uri = Uri,
            UnixSocket = UnixSocket,
            Listen = listen,
            BlockDevice = Attachment?.DevicePath,
            Connections = statistics.Connections,
            TotalConnections = statistics.TotalConnections,
            Requests = statistics.Requests,
            RequestErrors = statistics.RequestErrors,
            BytesRead = statistics.BytesRead,
            BytesWritten = statistics.BytesWritten,
        };
    }

    /// <summary>Detaches the block device, stops serving (bounded) and removes the socket.</summary>
    public async Task StopAsync()
    {
        Attachment?.Dispose();
        Attachment = null;
        await Server.StopAsync();
        if (UnixSocket != null) try { File.Delete(UnixSocket); } catch (IOException) { }
    }

    /// <summary>A listening Unix socket at <paramref name="path"/>, 0600 before anyone can reach it.</summary>
    public static Socket ListenUnix(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            // The umask makes it 0600 from its first moment (bind honours it); chmod again whatever the umask was.
            var old = Tmds.Linux.LibC.umask(0x3f);
            try { socket.Bind(new UnixDomainSocketEndPoint(path)); }
            finally { Tmds.Linux.LibC.umask(old); }
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
