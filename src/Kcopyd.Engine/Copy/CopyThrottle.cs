using System.Diagnostics;

namespace Kcopyd.Engine.Copy;

/// <summary>
/// Limits how hard a client drives its devices, so a resync cannot starve other work: by bandwidth, by the share
/// of time it keeps I/O in flight (dm-kcopyd's throttle), or both. Settable while jobs run.
/// </summary>
public sealed class CopyThrottle
{
    private static readonly long OneSecond = Stopwatch.Frequency;
    private readonly object _lock = new();
    private long _bytesPerSecond;
    private int _dutyCyclePercent = 100;
    private long _nextStart;          // bandwidth pacing: the earliest time the next chunk may start
    private int _ioInFlight;
    private long _busySince;
    private long _busyTicks;          // duty cycle: time with I/O in flight in the current window
    private long _windowStart = Stopwatch.GetTimestamp();

    /// <summary>0 for unlimited. A new limit applies from the next chunk on.</summary>
    public long BytesPerSecond
    {
        get => Volatile.Read(ref _bytesPerSecond);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            lock (_lock)
            {
                if (Interlocked.Exchange(ref _bytesPerSecond, value) == value) return;
                // The next chunk's slot was reckoned at the old rate, maybe tens of seconds away: forget it.
                _nextStart = 0;
            }
            Changed?.Invoke();
        }
    }

    /// <summary>1..100: the share of time the client may keep I/O in flight; 100 is unlimited.</summary>
    public int DutyCyclePercent
    {
        get => Volatile.Read(ref _dutyCyclePercent);
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, 100);
            if (Interlocked.Exchange(ref _dutyCyclePercent, value) != value) Changed?.Invoke();
        }
    }

    /// <summary>Wakes the client's worker, which may sleep until a chunk's slot at the old limit.</summary>
    internal Action? Changed { get; set; }

    public bool IsLimited => BytesPerSecond > 0 || DutyCyclePercent < 100;

    /// <summary>How long to wait before starting a chunk of <paramref name="bytes"/>; zero when it may start now (and is charged).</summary>
    internal TimeSpan DelayBeforeStart(long bytes)
    {
        if (!IsLimited) return TimeSpan.Zero;
        long now = Stopwatch.GetTimestamp();
        lock (_lock)
        {
            int percent = DutyCyclePercent;
            if (percent < 100)
            {
                long window = now - _windowStart;
                long busy = _busyTicks + (_ioInFlight > 0 ? now - _busySince : 0);
                if (window >= OneSecond)
                {
                    // Halve the history once a second, so the limit follows recent behaviour.
                    _busyTicks /= 2;
                    _windowStart = now - window / 2;
                }
                else if (busy * 100 > (long)percent * Math.Max(window, OneSecond / 10))
                {
                    return TimeSpan.FromMilliseconds(20);
                }
            }
            long rate = BytesPerSecond;
            if (rate > 0)
            {
                // Within a millisecond of its slot is on time: waits are timed in milliseconds.
                if (_nextStart - now > OneSecond / 1000) return Stopwatch.GetElapsedTime(now, _nextStart);
                // No credit is saved up while idle: each chunk starts a chunk's time after the one before.
                _nextStart = Math.Max(_nextStart, now) + (long)((double)bytes / rate * OneSecond);
            }
            return TimeSpan.Zero;
        }
    }

    internal void IoStarted()
    {
        if (DutyCyclePercent >= 100) return;
        lock (_lock)
        {
            if (_ioInFlight++ == 0) _busySince = Stopwatch.GetTimestamp();
        }
    }

    internal void IoFinished()
    {
        lock (_lock)
        {
            if (_ioInFlight == 0) return; // started while unlimited
            if (--_ioInFlight == 0) _busyTicks += Stopwatch.GetTimestamp() - _busySince;
        }
    }
}
