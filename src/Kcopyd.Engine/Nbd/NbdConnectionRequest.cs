using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Nbd;

/// <summary>One request of a connection from its header to its reply: the device's completion for it and what the writer sends.</summary>
/// <remarks>The completion runs on the I/O queue's thread, so it only hands over: it never blocks and never submits.</remarks>
internal sealed class NbdConnectionRequest(NbdConnection connection, ushort command, ushort flags, ulong cookie, ulong offset, uint length,
    long budgetBytes) : IBlockCompletion
{
    private const int MainTag = 0;
    private const int FlushTag = 1;

    private int _atDevice;
    private int _answered;

    public NbdConnection Connection => connection;

    public ushort Command => command;

    public ushort Flags => flags;

    public ulong Cookie => cookie;

    public ulong Offset => offset;

    public uint Length => length;

    /// <summary>What this request holds of the connection's buffer budget until its reply is sent.</summary>
    public long BudgetBytes => budgetBytes;

    public NbdConnectionBuffer? Buffer { get; init; }

    /// <summary>The NBD error of the reply, 0 for success.</summary>
    public uint Error { get; private set; }

    /// <summary>FUA: the write is answered only once a flush after it succeeded.</summary>
    public bool FlushAfter { get; init; }

    /// <summary>Hands the request to the device; a refusal (the device was disposed) answers it with EIO.</summary>
    public void Submit(BlockOperation operation, IIoQueue queue)
    {
        int tag = operation == BlockOperation.Flush && command != NbdProtocol.CmdFlush ? FlushTag : MainTag;
        long lengthBytes = operation == BlockOperation.Flush ? 0 : length;
        var request = new BlockRequest(operation, (long)offset, lengthBytes, Buffer?.Buffers ?? IoBuffers.None, this, tag);
        Volatile.Write(ref _atDevice, 1);
        connection.DeviceRequestStarted();
        try
        {
            connection.Export.Device.Submit(request, queue);
        }
        catch (Exception)
        {
            // No completion comes for a request the device refused by throwing (ObjectDisposedException).
            LeaveDevice();
            Answer((int)NbdProtocol.ErrIo);
        }
    }

    public void Completed(int tag, int error)
    {
        LeaveDevice();
        if (error == 0 && tag == MainTag && FlushAfter)
        {
            // Never submit from the queue's thread: a device may block its submitter (a mirror's full request pool).
            ThreadPool.UnsafeQueueUserWorkItem(static r => r.Submit(BlockOperation.Flush, r.Connection.Queue), this, preferLocal: false);
            return;
        }
        Answer(error);
    }

    /// <summary>Sets the reply's error (an errno, or an NBD error: the protocol's numbers are Linux's) and queues the reply, once.</summary>
    public void Answer(int errno)
    {
        if (Interlocked.Exchange(ref _answered, 1) != 0) return;
        Error = NbdProtocol.ToWireError(errno);
        connection.Answer(this);
    }

    private void LeaveDevice()
    {
        if (Interlocked.Exchange(ref _atDevice, 0) == 1) connection.DeviceRequestEnded();
    }
}
