namespace Kcopyd.Engine.Mirror;

/// <summary>
/// A mirror's bounded pool of request slots (the seed's <c>md->tio_pool</c>). Every request takes one slot for
/// its whole life; when none is free the submitting thread waits (mempool_alloc). That wait is where a shared
/// kcopyd thread deadlocked, so the pool also tells who is waiting.
/// </summary>
public sealed class RequestPool
{
    private readonly object _lock = new();
    private readonly List<int> _waitingThreads = new();
    private int _size;
    private int _inUse;
    private bool _aborted;

    public RequestPool(int size)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        _size = size;
    }

    /// <summary>Slots in the pool. Growing it lets waiters in at once; shrinking it takes effect as slots come back.</summary>
    public int Size
    {
        get { lock (_lock) return _size; }
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            lock (_lock)
            {
                _size = value;
                Monitor.PulseAll(_lock);
            }
        }
    }

    public int InUse { get { lock (_lock) return _inUse; } }

    /// <summary>Threads waiting for a slot right now.</summary>
    public int Waiters { get { lock (_lock) return _waitingThreads.Count; } }

    /// <summary>Managed thread ids of the waiting threads, so a test can name who is stuck here.</summary>
    internal int[] WaitingThreadIds { get { lock (_lock) return _waitingThreads.ToArray(); } }

    /// <summary>Takes a slot, waiting as long as it takes. False only when the pool was aborted.</summary>
    public bool Acquire()
    {
        lock (_lock)
        {
            if (!_aborted && _inUse < _size)
            {
                _inUse++;
                return true;
            }
            _waitingThreads.Add(Environment.CurrentManagedThreadId);
            try
            {
                while (!_aborted && _inUse >= _size) Monitor.Wait(_lock);
            }
            finally
            {
                _waitingThreads.Remove(Environment.CurrentManagedThreadId);
            }
            if (_aborted) return false;
            _inUse++;
            return true;
        }
    }

    public void Release()
    {
        lock (_lock)
        {
            if (_inUse == 0) throw new InvalidOperationException("A request slot was returned twice.");
            _inUse--;
            // Waiters for a slot and waiters for an idle pool share the monitor: wake them all.
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Waits until no slot is in use; false if the timeout passed first.</summary>
    public bool WaitIdle(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        lock (_lock)
        {
            while (_inUse > 0)
            {
                long left = timeout == Timeout.InfiniteTimeSpan ? Timeout.Infinite : deadline - Environment.TickCount64;
                if (timeout != Timeout.InfiniteTimeSpan && left <= 0) return false;
                Monitor.Wait(_lock, (int)Math.Min(left, int.MaxValue));
            }
            return true;
        }
    }

    /// <summary>
    /// Fails every waiting and future <see cref="Acquire"/>. Only the deadlock test uses it, to free a kcopyd thread
    /// that the pre-patch design left stuck here for good.
    /// </summary>
    internal void Abort()
    {
        lock (_lock)
        {
            _aborted = true;
            Monitor.PulseAll(_lock);
        }
    }
}
