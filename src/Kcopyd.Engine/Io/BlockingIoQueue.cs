namespace Kcopyd.Engine.Io;

/// <summary>
/// The fallback backend: a few threads of the client's own that run requests with blocking system calls.
/// Used where io_uring is unavailable, and by the io_uring queue for operations the ring cannot express.
/// </summary>
internal sealed class BlockingIoQueue : IIoQueue
{
    private readonly record struct Work(int Fd, bool IsBlockDevice, BlockRequest Request);

    // A plain queue under a lock, not a BlockingCollection: that one must be disposed, and neither its Add nor its
    // Dispose is safe against the other, so a Submit racing our Dispose met a collection in the middle of its own.
    // Here Dispose only sets _disposing: a late Submit is refused with ObjectDisposedException, whenever it comes.
    private readonly object _lock = new();
    private readonly Queue<Work> _work = new();
    private bool _disposing;
    private readonly Thread[] _threads;
    private readonly int[] _osThreadIds;

    public BlockingIoQueue(string name, int threadCount)
    {
        Name = name;
        _threads = new Thread[Math.Max(1, threadCount)];
        _osThreadIds = new int[_threads.Length];
        // Not disposed: the last thread may still be inside Signal when Wait returns. It holds no kernel handle.
        var started = new CountdownEvent(_threads.Length);
        for (int i = 0; i < _threads.Length; i++)
        {
            int index = i;
            _threads[i] = new Thread(() =>
            {
                _osThreadIds[index] = OsThread.CurrentId();
                started.Signal();
                Run();
            }) { IsBackground = true, Name = $"kcopyd-io/{name}/{i}" };
            _threads[i].Start();
        }
        started.Wait();
    }

    public string Name { get; }

    public string Backend => "blocking";

    /// <summary>OS ids of the queue's threads.</summary>
    internal IReadOnlyList<int> OsThreadIds => _osThreadIds;

    /// <summary>True on one of the queue's own threads, that is inside a completion of this queue.</summary>
    internal bool IsQueueThread => Array.IndexOf(_threads, Thread.CurrentThread) >= 0;

    /// <summary>
    /// Sees the result of every read and write call (bytes, or a negative errno) and may replace it: a test stands in
    /// for a kernel that returns a short transfer or a transient error. Set before submitting.
    /// </summary>
    internal Func<BlockRequest, int, int>? ResultOverride { get; set; }

    /// <summary>Queues the request; once Dispose has begun, refuses it with <see cref="ObjectDisposedException"/>.</summary>
    public void Submit(int fd, bool isBlockDevice, in BlockRequest request)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposing, this);
            _work.Enqueue(new Work(fd, isBlockDevice, request));
            Monitor.Pulse(_lock);
        }
    }

    private void Run()
    {
        while (TryTake(out var work))
        {
            int error = SyncIo.Execute(work.Fd, work.IsBlockDevice, work.Request, ResultOverride);
            work.Request.Completion.Completed(work.Request.Tag, error);
        }
    }

    /// <summary>The next request, waiting for one; false once the queue is disposing and nothing is left.</summary>
    private bool TryTake(out Work work)
    {
        lock (_lock)
        {
            while (!_work.TryDequeue(out work))
            {
                if (_disposing) return false;
                Monitor.Wait(_lock);
            }
            return true;
        }
    }

    /// <summary>
    /// Refuses new requests, finishes those already queued, then stops the threads. Safe to call again, or from
    /// several threads at once: each call returns once the threads have stopped. Not from a completion: a queue
    /// thread cannot wait for itself.
    /// </summary>
    public void Dispose()
    {
        if (IsQueueThread)
            throw new InvalidOperationException($"I/O queue '{Name}' cannot be disposed from its own completion thread.");
        lock (_lock)
        {
            _disposing = true;
            Monitor.PulseAll(_lock);
        }
        foreach (var thread in _threads) thread.Join();
    }
}
