using Kcopyd.Engine.Native;
using Tmds.Linux;

namespace Kcopyd.Engine.Io;

/// <summary>
/// Errors a request meets for a moment, so it is sent again a few times, after a short backoff, before one counts:
/// EAGAIN (the kernel short of request memory), and ECANCELED while the queue itself is not going away (nothing in
/// the engine cancels a request; the kernel gave up on it). Reported at once, either has a mirror fail a healthy leg
/// for good.
/// </summary>
internal static class TransientErrors
{
    /// <summary>Attempts of one request, the first included, before a transient error is reported.</summary>
    public const int MaxAttempts = 8;

    public static bool IsTransient(int errno, bool queueDisposing)
        => errno == LibC.EAGAIN || (errno == Errno.ECANCELED && !queueDisposing);

    /// <summary>The wait after failure number <paramref name="failures"/>: 1 ms, doubling up to 64 ms, 127 ms over all attempts.</summary>
    public static long BackoffMilliseconds(int failures) => Math.Min(64L, 1L << (failures - 1));
}
