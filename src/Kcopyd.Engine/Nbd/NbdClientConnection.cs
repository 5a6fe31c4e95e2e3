using System.Net.Sockets;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Nbd;

/// <summary>
/// One NBD connection in the transmission phase: a sender thread writes requests (and write payloads) in the order
/// they were queued, a receiver thread reads replies in whatever order the server sends them and matches them by
/// cookie. Once broken (the server gone, a protocol error, closed) every piece pending and every later one ends
/// with EIO.
/// </summary>
internal sealed partial class NbdClientConnection
{
    private static readonly TimeSpan CloseGrace = TimeSpan.FromSeconds(2);

    private readonly Socket _socket;
    /// <summary>The socket's stream, or TLS over it: the sender writes it and the receiver reads it at the same time, which both allow.</summary>
    private readonly Stream _stream;
    private readonly object _lock = new();
    private readonly Dictionary<ulong, NbdClientPiece> _pending = new();
    private readonly Queue<NbdClientPiece> _toSend = new();
    private readonly SemaphoreSlim _slots;
    private readonly Thread _sender;
    private readonly Thread _receiver;
    private ulong _lastCookie;
    private bool _closing;
    private volatile bool _closedByClient;
    private volatile bool _broken;
    private volatile string? _brokenReason;

    public NbdClientConnection(Socket socket, Stream stream, string name, int maxInFlight)
    {
        _socket = socket;
        _stream = stream;
        _slots = new SemaphoreSlim(maxInFlight);
        _sender = new Thread(SendLoop) { IsBackground = true, Name = $"nbd-send/{name}" };
        _receiver = new Thread(ReceiveLoop) { IsBackground = true, Name = $"nbd-recv/{name}" };
        _sender.Start();
        _receiver.Start();
    }

    /// <summary>No request can reach the server any more.</summary>
    public bool IsBroken => _broken;

    /// <summary>Why the connection broke, in words; null while it works.</summary>
    public string? BrokenReason => _brokenReason;

    /// <summary>True on the connection's own threads, where waiting for the connection would wait for oneself.</summary>
    public bool IsOwnThread => Thread.CurrentThread == _receiver || Thread.CurrentThread == _sender;

    /// <summary>
    /// Queues a piece for the sender. Waits while the connection has its most pieces in flight, except on the
    /// connection's own threads (a completion that submits again): they free the slots, so they must not wait for one.
    /// </summary>
    public void Enqueue(NbdClientPiece piece)
    {
        if (!IsOwnThread && !_broken)
        {
            _slots.Wait();
            piece.HoldsSlot = true;
        }
        bool refused;
        lock (_lock)
        {
            refused = _broken || _closing;
            if (!refused)
            {
                piece.Cookie = ++_lastCookie;
                _pending.Add(piece.Cookie, piece);
                _toSend.Enqueue(piece);
                Monitor.Pulse(_lock);
            }
        }
        if (!refused) return;
        ReleaseSlot(piece);
        piece.End(Errno.EIO); // never sent
        piece.End(Errno.EIO); // never answered
    }

    /// <summary>
    /// Ends the connection: NBD_CMD_DISC after what is queued (a soft disconnect), then, after a short grace for
    /// the server to hang up, a hard close that ends whatever is still pending with EIO.
    /// </summary>
    public void Close()
    {
        bool own = IsOwnThread;
        _closedByClient = true;
        Disconnect();
        if (!own)
        {
            _sender.Join(CloseGrace);
            _receiver.Join(CloseGrace); // the server hangs up after NBD_CMD_DISC; the receiver sees the end
        }
        Break("the device was closed.");
        if (!own)
        {
            _sender.Join(CloseGrace);
            _receiver.Join(CloseGrace);
        }
        try
        {
            _stream.Dispose();
        }
        catch (Exception ex) when (ex is IOException or SocketException)
        {
            // The TLS stream may try to say goodbye on a socket that is gone: nothing is lost.
        }
        _socket.Dispose();
    }

    /// <summary>Queues NBD_CMD_DISC; nothing queued after it is sent.</summary>
    private void Disconnect()
    {
        lock (_lock)
        {
            if (_broken || _closing) return;
            _closing = true;
            _toSend.Enqueue(new NbdClientPiece(null, NbdProtocol.CmdDisconnect, 0, 0, 0, zeroPayload: false));
            Monitor.Pulse(_lock);
        }
    }

    /// <summary>
    /// Marks the connection broken and shuts the socket down, which wakes both threads out of their blocking calls,
    /// then ends every piece still pending with EIO. A piece the sender is in the middle of ends when its send does.
    /// </summary>
    private void Break(string reason)
    {
        NbdClientPiece[] unsent;
        NbdClientPiece[] unanswered;
        lock (_lock)
        {
            if (_broken) return;
            // The server hanging up after our NBD_CMD_DISC is the end we asked for, not a failure of its own.
            _brokenReason = _closedByClient ? "the device was closed." : reason;
            _broken = true;
            unsent = _toSend.ToArray();
            _toSend.Clear();
            unanswered = _pending.Values.ToArray();
            _pending.Clear();
            Monitor.PulseAll(_lock);
        }
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already shut down or closed: the threads have their error already.
        }
        foreach (var piece in unanswered) ReleaseSlot(piece);
        foreach (var piece in unsent) piece.End(Errno.EIO);
        foreach (var piece in unanswered) piece.End(Errno.EIO);
    }

    private void ReleaseSlot(NbdClientPiece piece)
    {
        if (!piece.HoldsSlot) return;
        piece.HoldsSlot = false;
        _slots.Release();
    }
}
