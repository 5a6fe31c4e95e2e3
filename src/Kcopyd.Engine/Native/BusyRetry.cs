namespace Kcopyd.Engine.Native;

/// <summary>
/// A claim that a just-closed descriptor gave up (an O_EXCL open of a block device, an OFD lock) can still be held
/// for a moment by a child that another thread forked and has not yet exec'ed: the descriptor is close-on-exec,
/// not close-on-fork. So a busy answer is asked again a few times, for about 300 ms, before it counts.
/// </summary>
internal static class BusyRetry
{
    private static readonly int[] DelaysMs = [10, 20, 40, 80, 160];

    /// <summary>Runs <paramref name="attempt"/> (0 or an errno) again while it answers <paramref name="busy"/>.</summary>
    public static int Run(Func<int> attempt, params int[] busy)
    {
        int errno = attempt();
        foreach (int delay in DelaysMs)
        {
            if (Array.IndexOf(busy, errno) < 0) return errno;
            Thread.Sleep(delay);
            errno = attempt();
        }
        return errno;
    }
}
