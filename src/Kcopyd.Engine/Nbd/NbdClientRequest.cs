using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Nbd;

/// <summary>
/// A block request in flight on an NBD connection: the caller's completion and buffers, and the count of its
/// pieces (one per NBD request the server's maximum size splits it into) still to end.
/// </summary>
internal sealed class NbdClientRequest
{
    private readonly NbdDevice _device;
    private readonly IBlockCompletion _completion;
    private readonly int _tag;
    private int _remaining;
    private int _error;

    // pieces: the NBD requests it is split into; one more is held by the issuer until all are issued, so pieces
    // answered while others are still being queued cannot complete the request early.
    public NbdClientRequest(NbdDevice device, in BlockRequest request, int pieces)
    {
        _device = device;
        _completion = request.Completion;
        _tag = request.Tag;
        Buffers = request.Buffers;
        _remaining = pieces + 1;
    }

    public IoBuffers Buffers { get; }

    /// <summary>One piece ended (or the issuer let go); the last one completes the caller's request with the first error.</summary>
    public void PieceEnded(int error)
    {
        if (error != 0) Interlocked.CompareExchange(ref _error, error, 0);
        if (Interlocked.Decrement(ref _remaining) != 0) return;
        try
        {
            _completion.Completed(_tag, Volatile.Read(ref _error));
        }
        finally
        {
            // After the caller's completion: a Dispose waiting for the device to drain must see this request done.
            _device.EndRequest();
        }
    }
}
