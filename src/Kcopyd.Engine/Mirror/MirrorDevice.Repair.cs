using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// Repair, as admins know it from mdadm and LVM: re-add dead legs whose device works again (only the regions
/// written while they were out are copied, since those fell out of sync), replace a leg, add one, split one off.
/// A change of the leg list runs with the mirror suspended (new requests wait, those in flight end, the recovery
/// pauses), like a dm table reload; health changes alone need no suspension.
/// </summary>
public sealed partial class MirrorDevice
{
    private static readonly TimeSpan SuspendTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(10);
    private readonly ManualResetEventSlim _running = new(true);
    private readonly SemaphoreSlim _maintenance = new(1, 1);
    private readonly List<(Action Work, TaskCompletionSource Done)> _daemonWork = new();

    /// <summary>
    /// Gives every dead leg whose device answers a read again a second chance: it comes back stale and the
    /// recovery copies the out-of-sync regions to it. Returns each dead leg with null, or why it stays dead.
    /// </summary>
    public IReadOnlyList<(string Leg, string? Error)> ReAddDeadLegs()
    {
        var results = new List<(string, string?)>();
        WithMaintenance(() =>
        {
            foreach (var leg in _legs.Where(l => l.Health is LegHealth.Dead or LegHealth.Hung))
            {
                // A hung leg is re-added only once everything it was sent has returned: a probe now would only hang too.
                string? error = leg.IoInFlight > 0
                    ? $"it is hung: {leg.IoInFlight} request(s) sent to it have not returned"
                    : Probe(leg.Device);
                results.Add((leg.Name, error));
                if (error != null) continue;
                OnDaemon(() =>
                {
                    lock (_legLock)
                    {
                        // A default that died out of sync holds every acknowledged write: it is current, not stale.
                        leg.SetHealth(leg.Index == _defaultLeg ? LegHealth.Alive : LegHealth.Stale);
                        leg.TimedOut = false; // it answered: it is sent I/O again
                        RecordLegsLocked();
                    }
                    Warn($"Leg '{leg.Name}' was re-added; the regions out of sync are copied to it.");
                    RestartRecovery();
                });
            }
        });
        return results;
    }

    /// <summary>Puts <paramref name="device"/> in place of leg <paramref name="legName"/>; the new leg gets a full resync.</summary>
    public void ReplaceLeg(string legName, IBlockDevice device)
    {
        WithMaintenance(() =>
        {
            var old = FindLeg(legName);
            CheckNewLeg(device);
            Claim([device]);
            try
            {
                Reconfigure(() =>
                {
                    MoveDefaultOffLocked(old, "replaced");
                    var legs = _legs.ToArray();
                    legs[old.Index] = new MirrorLeg(device, old.Index, LegHealth.Stale);
                    return legs;
                }, $"Leg '{old.Name}' was replaced by '{device.Name}', which is resynced whole.");
            }
            catch
            {
                Release([device]);
                throw;
            }
            Release([old.Device]);
        });
    }

    /// <summary>Adds a leg; it gets a full resync before it serves reads.</summary>
    public void AddLeg(IBlockDevice device)
    {
        WithMaintenance(() =>
        {
            if (_legs.Length >= MaxLegs)
                throw new KcopydException("TooManyLegs", KcopydErrorKind.InvalidArgument, $"Mirror '{Name}' has {MaxLegs} legs already.", device.Name);
            CheckNewLeg(device);
            Claim([device]);
            try
            {
                Reconfigure(() => [.. _legs, new MirrorLeg(device, _legs.Length, LegHealth.Stale)],
                    $"Leg '{device.Name}' was added and is resynced whole.");
            }
            catch
            {
                Release([device]);
                throw;
            }
        });
    }

    /// <summary>
    /// Takes a leg out of the mirror (lvconvert --splitmirrors). Returns true when it was alive with every
    /// region in sync: the legs were flushed first, so it is then a consistent copy of the mirror.
    /// </summary>
    public bool RemoveLeg(string legName)
    {
        bool consistent = false;
        WithMaintenance(() =>
        {
            var leg = FindLeg(legName);
            if (_legs.Length <= 2)
                throw new KcopydException("TooFewLegs", KcopydErrorKind.InvalidOperation, $"Mirror '{Name}' keeps at least 2 legs; remove the mirror instead.", legName);
            Reconfigure(() =>
            {
                MoveDefaultOffLocked(leg, "removed");
                consistent = leg.IsAlive && _log.SyncCount == RegionCount && FlushLegs();
                return _legs.Where(l => l != leg).Select((l, i) => new MirrorLeg(l.Device, i, l.Health)).ToArray();
            }, $"Leg '{leg.Name}' was removed from the mirror.", fullResync: false);
            Release([leg.Device]);
        });
        return consistent;
    }

    /// <summary>The leg named <paramref name="legName"/> (its path as shown, or its stable id); LegNotFound if none.</summary>
    public MirrorLeg FindLeg(string legName)
        => _legs.FirstOrDefault(l => l.Name == legName || l.StableId == legName)
           ?? throw new KcopydException("LegNotFound", KcopydErrorKind.NotFound,
               $"Mirror '{Name}' has no leg '{legName}'; its legs are {string.Join(", ", _legs.Select(l => l.Name))}.", legName);

    private void CheckNewLeg(IBlockDevice device)
    {
        if (device.LogicalBlockSize != LogicalBlockSize)
            throw new KcopydException("LegBlockSizeMismatch", KcopydErrorKind.InvalidArgument,
                $"'{device.Name}' has {device.LogicalBlockSize}-byte blocks, the mirror {LogicalBlockSize}-byte ones.", device.Name);
        if (device.SizeBytes < SizeBytes)
            throw new KcopydException("LegTooSmall", KcopydErrorKind.InvalidArgument,
                $"'{device.Name}' holds {device.SizeBytes} bytes; the mirror needs {SizeBytes}.", device.Name);
        if (!device.CanWrite)
            throw new KcopydException("DeviceReadOnly", KcopydErrorKind.InvalidArgument, $"'{device.Name}' is open read-only.", device.Name);
    }

    /// <summary>The default leg may leave only while every region is in sync, to an alive leg that then holds everything.</summary>
    private void MoveDefaultOffLocked(MirrorLeg leg, string what)
    {
        if (leg.Index != _defaultLeg) return;
        var next = NextDefaultLocked(leg);
        if (next == null)
            throw new KcopydException("MirrorNotInSync", KcopydErrorKind.InvalidOperation,
                $"'{leg.Name}' is the default leg and the only one holding the out-of-sync regions of mirror '{Name}'; it cannot be {what} until the mirror is in sync.", leg.Name);
        _defaultLeg = next.Index;
    }

    /// <summary>
    /// Suspends the mirror, installs the leg list <paramref name="change"/> builds (on the daemon, under the leg
    /// lock), records it in the log and resumes. With <paramref name="fullResync"/> every region is out of sync.
    /// </summary>
    private void Reconfigure(Func<MirrorLeg[]> change, string warning, bool fullResync = true)
    {
        Suspend();
        try
        {
            OnDaemon(() =>
            {
                lock (_legLock)
                {
                    var before = _legs;
                    var legs = change(); // may move the default first
                    var defaultDevice = before[_defaultLeg].Device;
                    _defaultLeg = Array.FindIndex(legs, l => ReferenceEquals(l.Device, defaultDevice));
                    _legs = legs;
                    if (fullResync) _log.SetAllOutOfSync();
                    RecordLegsLocked();
                }
                if (!TryFlushLog(includeClears: false))
                    throw new KcopydException("LogWriteFailed", KcopydErrorKind.DeviceError, $"The log of mirror '{Name}' could not record the new legs.", Name);
                Warn(warning);
                lock (_syncLock)
                {
                    if (_inSync.Task.IsCompleted && State != MirrorState.InSync) _inSync = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                }
            });
        }
        finally
        {
            Resume();
        }
    }

    /// <summary>New requests wait at the gate; those in flight and the recovery's copies end. Bounded.</summary>
    private void Suspend()
    {
        _running.Reset();
        PauseRecovery();
        bool idle = SpinWait.SpinUntil(() => Volatile.Read(ref _submitters) == 0, SuspendTimeout) && RequestPool.WaitIdle(SuspendTimeout);
        if (idle) return;
        Resume();
        throw new KcopydException("MirrorBusy", KcopydErrorKind.ResourceBusy,
            $"Mirror '{Name}' still had requests in flight after {SuspendTimeout.TotalSeconds:0} s; nothing was changed.", Name);
    }

    private void Resume()
    {
        RestartRecovery();
        _running.Set();
    }

    /// <summary>The gate of <see cref="Submit"/>: counts a submitter only once it is past a running gate.</summary>
    private void EnterSubmit()
    {
        while (true)
        {
            _running.Wait();
            Interlocked.Increment(ref _submitters);
            if (_running.IsSet || Volatile.Read(ref _closing) != 0) return;
            Interlocked.Decrement(ref _submitters);
        }
    }

    private void RestartRecovery()
    {
        _recoveryStopped = false;
        _log.RestartResync();
        Wake();
    }

    /// <summary>Runs <paramref name="work"/> on the daemon between passes and waits for it (bounded); rethrows its exception.</summary>
    private void OnDaemon(Action work)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_daemonWork) _daemonWork.Add((work, done));
        Wake();
        // The wait handle, not Task.Wait: that wraps a refusal of the work (MirrorNotInSync, say) in an AggregateException.
        if (!((IAsyncResult)done.Task).AsyncWaitHandle.WaitOne(SuspendTimeout))
            throw new KcopydException("MirrorBusy", KcopydErrorKind.ResourceBusy, $"Mirror '{Name}' did not get to the change within {SuspendTimeout.TotalSeconds:0} s.", Name);
        done.Task.GetAwaiter().GetResult();
    }

    private void DoDaemonWork()
    {
        List<(Action Work, TaskCompletionSource Done)> batch;
        lock (_daemonWork)
        {
            batch = [.. _daemonWork];
            _daemonWork.Clear();
        }
        foreach (var (work, done) in batch)
        {
            try
            {
                work();
                done.SetResult();
            }
            catch (Exception ex)
            {
                done.SetException(ex);
            }
        }
    }

    /// <summary>One leg change or scrub at a time.</summary>
    private void WithMaintenance(Action work)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _closing) != 0, this);
        if (!_maintenance.Wait(SuspendTimeout))
            throw new KcopydException("MirrorBusy", KcopydErrorKind.ResourceBusy, $"Mirror '{Name}' is busy with another repair or scrub.", Name);
        try { work(); }
        finally { _maintenance.Release(); }
    }

    /// <summary>Reads the first and last block of a device (bounded): null when both came back.</summary>
    private string? Probe(IBlockDevice device)
    {
        using var buffer = new LegBuffer(LogicalBlockSize);
        foreach (long offset in new[] { 0, SizeBytes - LogicalBlockSize })
        {
            int errno = buffer.Transfer(device, Client.Queue, BlockOperation.Read, offset, LogicalBlockSize, ProbeTimeout);
            if (errno != 0) return $"reading it at {offset} failed: {(errno == Errno.ETIMEDOUT ? "no answer in time" : Errno.Describe(errno))}";
        }
        return null;
    }
}
