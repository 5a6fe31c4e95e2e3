using System.Diagnostics;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// One request to one leg, timed: the leg knows what it has in flight and since when, so a leg that stops
/// answering for longer than the mirror's leg timeout is found and failed. Such a request can be given up on
/// (<see cref="GiveUp"/>): the mirror hears ETIMEDOUT at once, and the answer the leg gives later is only counted.
/// </summary>
internal sealed class LegIo(MirrorLeg leg, IBlockCompletion inner, BlockOperation operation, int tag) : IBlockCompletion
{
    private const int InFlight = 0, Answered = 1, GivenUp = 2;
    private int _state;

    public long IssuedTimestamp { get; } = Stopwatch.GetTimestamp();

    /// <summary>
    /// A request that may be given up on before it returns: one the kernel does, and that only reads our memory
    /// (a write, zeroing, discard or flush to a block device or image file). A read never is: the kernel may still
    /// write into its buffer, which the caller would have reused. Nor is a request to an NBD server or a mirror
    /// used as a leg: our own threads still use its buffers and vectors, and answer it within their own bounds.
    /// </summary>
    public bool MayGiveUp => operation != BlockOperation.Read && leg.Device is Devices.LinuxBlockDevice;

    public void Completed(int tag, int error)
    {
        leg.Untrack(this);
        if (Interlocked.Exchange(ref _state, Answered) == InFlight) inner.Completed(tag, error);
        else leg.CountLateAnswer();
    }

    /// <summary>Ends the request for the mirror now, as if the leg had failed it with ETIMEDOUT; false if it had already ended.</summary>
    public bool GiveUp()
    {
        if (Interlocked.CompareExchange(ref _state, GivenUp, InFlight) != InFlight) return false;
        inner.Completed(tag, Errno.ETIMEDOUT);
        return true;
    }
}
