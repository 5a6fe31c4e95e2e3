using System.Diagnostics;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// The leg timeout: a leg that leaves a request unanswered for longer than <see cref="LegTimeout"/> is failed as
/// Hung, as dm-raid1 fails a leg that returns errors, and the mirror goes on degraded. It runs on a timer of its
/// own, not on kmirrord, which may itself be waiting on the hung leg (a flush of the legs before the log's clears).
/// </summary>
public sealed partial class MirrorDevice
{
    private static readonly TimeSpan LegWatchInterval = TimeSpan.FromMilliseconds(500);
    private readonly Timer _legWatch;
    private long _legTimeoutTicks;

    /// <summary>How long a leg may leave a request unanswered before it is failed as hung; zero waits for ever. Settable at any time.</summary>
    public TimeSpan LegTimeout
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _legTimeoutTicks));
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
            Interlocked.Exchange(ref _legTimeoutTicks, value.Ticks);
        }
    }

    /// <summary>
    /// Fails each leg whose oldest request is older than the timeout, then gives up on its requests that may be given
    /// up on (writes, flushes: see <see cref="LegIo.MayGiveUp"/>) so the mirror answers them from the other legs.
    /// The leg is failed first, so a default leg that hangs has handed over before those writes are answered. A hung
    /// leg whose requests have all returned is dead: Repair-MirrorDevice can re-add it.
    /// </summary>
    private void WatchLegs()
    {
        var timeout = LegTimeout;
        long now = Stopwatch.GetTimestamp();
        foreach (var leg in _legs)
        {
            if (leg.TimedOut)
            {
                GiveUpOn(leg);
                if (leg.Health == LegHealth.Hung && leg.IoInFlight == 0) LegAnsweredAgain(leg);
                continue;
            }
            if (timeout <= TimeSpan.Zero) continue;
            long oldest = leg.OldestInFlightTimestamp();
            if (oldest == 0 || Stopwatch.GetElapsedTime(oldest, now) < timeout) continue;
            leg.TimedOut = true;
            FailLeg(leg, "a request", Errno.ETIMEDOUT);
            GiveUpOn(leg);
        }
    }

    private static void GiveUpOn(MirrorLeg leg)
    {
        foreach (var io in leg.InFlight())
            if (io.MayGiveUp) io.GiveUp();
    }

    private void LegAnsweredAgain(MirrorLeg leg)
    {
        lock (_legLock)
        {
            if (leg.Health != LegHealth.Hung) return;
            leg.SetHealth(LegHealth.Dead);
        }
        Warn($"Hung leg '{leg.Name}' has answered all its requests again ({leg.LateAnswers} after they had timed out); it is dead until Repair-MirrorDevice re-adds it.");
        Wake();
    }
}
