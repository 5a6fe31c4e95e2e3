using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// A caller's request while the mirror works on it: it holds one slot of the request pool from Submit to its
/// end, and ends when the last of its per-region pieces has.
/// </summary>
internal sealed class MirrorRequest
{
    private readonly RequestPool _pool;
    private int _piecesLeft;
    private int _errno;

    public MirrorRequest(in BlockRequest request, RequestPool pool, int pieces)
    {
        Request = request;
        _pool = pool;
        _piecesLeft = pieces;
    }

    public BlockRequest Request { get; }

    public BlockOperation Operation => Request.Operation;

    public void PieceDone(int errno)
    {
        if (errno != 0) Interlocked.CompareExchange(ref _errno, errno, 0);
        if (Interlocked.Decrement(ref _piecesLeft) != 0) return;
        // The slot goes back before the caller hears of the end (dm frees the tio before bio_endio), so a caller
        // that submits again from its completion finds room.
        _pool.Release();
        Request.Completion.Completed(Request.Tag, Volatile.Read(ref _errno));
    }
}
