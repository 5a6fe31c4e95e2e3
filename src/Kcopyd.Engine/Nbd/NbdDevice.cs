using System.Security.Cryptography;
using System.Text;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;
using static Kcopyd.Engine.Nbd.NbdProtocol;

namespace Kcopyd.Engine.Nbd;

/// <summary>
/// An NBD export as a block device: one connection, or several when the server says NBD_FLAG_CAN_MULTI_CONN, many
/// requests in flight on each, replies matched by cookie and completed on the connection's receiver thread.
/// Requests larger than the server's maximum are split, and over several connections a read or write is split
/// so that its pieces travel side by side.
/// </summary>
public sealed partial class NbdDevice : IBlockDevice
{
    /// <summary>
    /// The least LogicalBlockSize reported. The engine aligns copies to it; most servers (nbdkit, qemu-nbd on a file)
    /// accept any byte range and say 1 or nothing, and 512 keeps copies sector-shaped like a disk's.
    /// </summary>
    public const int MinimumLogicalBlockSize = 512;

    /// <summary>Read and write pieces stay at most this big even when the server allows more, so no one reply ties up the stream.</summary>
    private const uint MaxPayloadPiece = 32 * 1024 * 1024;
    /// <summary>Zero and trim pieces carry no payload; a server saying "no limit" still gets pieces below the 32-bit length.</summary>
    private const uint MaxRangePiece = 1024 * 1024 * 1024;
    /// <summary>Spread over several connections a read or write goes in pieces no smaller than this (nbdcopy's request size).</summary>
    private const uint MinSpreadPiece = 256 * 1024;

    // Set in _state once disposed; the bits below it count requests submitted and not yet completed.
    private const int DisposedFlag = 1 << 30;

    private readonly NbdClientExport _export;
    /// <summary>The first is the one a flush goes to; with CAN_MULTI_CONN it covers what the others completed.</summary>
    private readonly NbdClientConnection[] _connections;
    private readonly NbdClientOptions _options;
    private readonly ManualResetEventSlim _drained = new(false);
    private readonly uint _payloadPiece;
    private readonly uint _rangePiece;
    private int _state;
    private int _nextConnection;

    private NbdDevice(string name, NbdUri uri, NbdClientExport export, NbdClientConnection[] connections, bool write, NbdClientOptions options)
    {
        Name = name;
        Uri = uri;
        _export = export;
        _connections = connections;
        _options = options;
        SizeBytes = export.SizeBytes;
        LogicalBlockSize = (int)Math.Max(export.MinimumBlockSize, MinimumLogicalBlockSize);
        CanWrite = write && !export.Has(FlagReadOnly);
        // The export's address alone: the same export over TLS, or with other certificates, is the same device.
        string normalised = uri.ExportAddress;
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(normalised));
        Identity = new DeviceIdentity(DeviceKind.Network, BitConverter.ToUInt64(hash, 0), BitConverter.ToUInt64(hash, 8));
        StableId = "nbd:" + normalised;
        uint min = export.MinimumBlockSize;
        _payloadPiece = Math.Min(export.MaximumBlockSize, MaxPayloadPiece) / min * min;
        _rangePiece = Math.Min(export.HasBlockSizes ? export.MaximumBlockSize : NbdClientExport.DefaultMaximumPayload, MaxRangePiece) / min * min;
    }

    /// <summary>The URI as the caller wrote it.</summary>
    public string Name { get; }

    public NbdUri Uri { get; }

    public long SizeBytes { get; }

    /// <summary>The server's minimum block size, but at least <see cref="MinimumLogicalBlockSize"/>.</summary>
    public int LogicalBlockSize { get; }

    /// <summary>Opened for writing and the server did not say NBD_FLAG_READ_ONLY.</summary>
    public bool CanWrite { get; }

    /// <summary>Kind Network; Device and Inode are the first 16 bytes of the SHA-256 of the export's address (<see cref="NbdUri.ExportAddress"/>).</summary>
    public DeviceIdentity Identity { get; }

    /// <summary><c>nbd:</c> and the export's address: the same export by another spelling of its URI, or over TLS, is the same id.</summary>
    public string StableId { get; }

    /// <summary>The server's minimum block size (1 when it gave none): offsets and lengths are multiples of it.</summary>
    public int MinimumBlockSize => (int)_export.MinimumBlockSize;

    public int PreferredBlockSize => (int)_export.PreferredBlockSize;

    /// <summary>The largest read or write sent as one NBD request; larger ones are split.</summary>
    public long MaximumRequestBytes => _payloadPiece;

    public bool IsReadOnlyExport => _export.Has(FlagReadOnly);

    /// <summary>The server takes NBD_CMD_FLUSH; without it a Flush succeeds at once (there is nothing the server could be asked).</summary>
    public bool CanFlush => _export.Has(FlagSendFlush);

    /// <summary>The server takes NBD_CMD_TRIM; without it a Discard fails with EOPNOTSUPP, as on a local device that cannot discard.</summary>
    public bool CanTrim => _export.Has(FlagSendTrim);

    /// <summary>The server takes NBD_CMD_WRITE_ZEROES; without it WriteZeroes writes zeros.</summary>
    public bool CanWriteZeroes => _export.Has(FlagSendWriteZeroes);

    /// <summary>
    /// The server says several connections see one another's writes (NBD_FLAG_CAN_MULTI_CONN): the device then opens
    /// <see cref="NbdClientOptions.Connections"/>.
    /// </summary>
    public bool CanMultiConn => _export.Has(FlagCanMultiConn);

    /// <summary>Connections the device spreads its requests over: 1 unless the server allows more.</summary>
    public int ConnectionCount => _connections.Length;

    /// <summary>False once a connection is lost: requests then fail with EIO. Reopen the device to go on.</summary>
    public bool IsConnected => Array.TrueForAll(_connections, c => !c.IsBroken);

    /// <summary>Why a connection was lost, in words; null while connected.</summary>
    public string? ConnectionError => Array.Find(_connections, c => c.IsBroken)?.BrokenReason;

    /// <summary>
    /// Connects to the export <paramref name="uri"/> names and negotiates it, all within
    /// <see cref="NbdClientOptions.ConnectTimeout"/>. <see cref="DeviceOpenOptions.Exclusive"/> and
    /// <see cref="DeviceOpenOptions.Direct"/> have no meaning over NBD and are ignored.
    /// </summary>
    /// <exception cref="KcopydException">InvalidNbdUri, NbdConnectFailed, NbdExportNotFound, NbdHandshakeTimeout,
    /// NbdHandshakeFailed; for TLS NbdTlsRequired, NbdTlsNotOffered, NbdTlsHandshakeFailed, NbdTlsPskUnsupported and the
    /// certificate directory's TlsCertificatesNotFound, TlsCertificateInvalid, TlsKeyReadableByOthers, TlsRevocationListUnsupported.</exception>
    public static NbdDevice Open(string uri, DeviceOpenOptions options, NbdClientOptions? clientOptions = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(uri);
        return Open(NbdUri.Parse(uri), uri, options, clientOptions);
    }

    /// <inheritdoc cref="Open(string, DeviceOpenOptions, NbdClientOptions?)"/>
    public static NbdDevice Open(NbdUri uri, DeviceOpenOptions options, NbdClientOptions? clientOptions = null)
    {
        ArgumentNullException.ThrowIfNull(uri);
        return Open(uri, uri.ToString(), options, clientOptions);
    }

    private static NbdDevice Open(NbdUri uri, string name, DeviceOpenOptions options, NbdClientOptions? clientOptions)
    {
        ArgumentNullException.ThrowIfNull(options);
        var settings = clientOptions ?? NbdClientOptions.Default;
        settings.Validate();
        // The certificates are read before connecting: a bad directory fails the same way whatever the server does.
        var tls = uri.Tls == null ? null : NbdClientTls.For(uri);
        var deadline = new NbdClientDeadline(settings.ConnectTimeout);
        var (export, first) = Connect(uri, tls, name, deadline, settings, 0);
        var connections = new List<NbdClientConnection> { first };
        if (export.Has(FlagCanMultiConn))
        {
            // More connections are a speed-up, not a need: one the server refuses (a connection limit) or answers
            // differently leaves the device with those it has.
            while (connections.Count < settings.Connections && !deadline.Expired)
            {
                try
                {
                    var (again, connection) = Connect(uri, tls, name, deadline, settings, connections.Count);
                    if (again != export)
                    {
                        connection.Close();
                        break;
                    }
                    connections.Add(connection);
                }
                catch (Exception ex) when (ex is KcopydException or IOException or System.Net.Sockets.SocketException)
                {
                    break;
                }
            }
        }
        return new NbdDevice(name, uri, export, connections.ToArray(), options.Write, settings);
    }

    private static (NbdClientExport, NbdClientConnection) Connect(NbdUri uri, NbdClientTls? tls, string name, NbdClientDeadline deadline,
        NbdClientOptions settings, int index)
    {
        var socket = NbdClientSocket.Connect(uri, name, deadline);
        try
        {
            var (export, stream) = NbdClientHandshake.Negotiate(socket, uri, tls, name, deadline);
            string threadName = index == 0 ? uri.Address : $"{uri.Address}#{index}";
            return (export, new NbdClientConnection(socket, stream, threadName, settings.MaxInFlight));
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public override string ToString() => Name;
}
