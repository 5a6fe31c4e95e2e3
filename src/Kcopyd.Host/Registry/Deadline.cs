using System.Diagnostics;

namespace Kcopyd.Host.Registry;

/// <summary>
/// One bound for an admin's action made of several waits on devices (stop the jobs, end the exports, close the
/// mirror): each wait takes what is left of it, so a hung device costs the action its bound once, not per wait.
/// </summary>
internal readonly struct Deadline(TimeSpan total)
{
    private readonly long _start = Stopwatch.GetTimestamp();

    public TimeSpan Total { get; } = total;

    /// <summary>What is left, but at least <paramref name="floor"/>: a last step still gets a moment to end cleanly.</summary>
    public TimeSpan Remaining(TimeSpan floor = default)
    {
        var left = Total - Stopwatch.GetElapsedTime(_start);
        return left > floor ? left : floor;
    }

    /// <summary>What is left, but at most <paramref name="most"/>.</summary>
    public TimeSpan AtMost(TimeSpan most) => Remaining() < most ? Remaining() : most;
}
