using System.Diagnostics;

namespace Kcopyd.Engine.Nbd;

/// <summary>The end of the time an open may take, shared by connecting and every step of the handshake.</summary>
internal readonly struct NbdClientDeadline
{
    private readonly long _endTimestamp;

    public NbdClientDeadline(TimeSpan timeout)
    {
        Timeout = timeout;
        _endTimestamp = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
    }

    public TimeSpan Timeout { get; }

    public TimeSpan Remaining => TimeSpan.FromSeconds(Math.Max(0, _endTimestamp - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency);

    public bool Expired => Stopwatch.GetTimestamp() >= _endTimestamp;

    /// <summary>What is left in whole milliseconds, at least 1 (0 means "no timeout" to a socket).</summary>
    public int RemainingMilliseconds => (int)Math.Clamp(Math.Ceiling(Remaining.TotalMilliseconds), 1, int.MaxValue);
}
