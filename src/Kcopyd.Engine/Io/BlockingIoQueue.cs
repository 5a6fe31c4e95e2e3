using System.Collections.Concurrent;

namespace Kcopyd.Engine.Io;

/// <summary>
/// The fallback backend: a few threads of the client's own that run requests with blocking system calls.
/// Used where io_uring is unavailable, and by the io_uring queue for operations the ring cannot express.
/// </summary>
internal sealed class BlockingIoQueue : IIoQueue
{
    private readonly record struct Work(int Fd, bool IsBlockDevice, BlockRequest Request);

    private readonly BlockingCollection<Work> _work = new(new ConcurrentQueue<Work>());
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

    /// <summary>
    /// Sees the result of every read and write call (bytes, or a negative errno) and may replace it: a test stands in
    /// for a kernel that returns a short transfer or a transient error. Set before submitting.
    /// </summary>
    internal Func<BlockRequest, int, int>? ResultOverride { get; set; }

    public void Submit(int fd, bool isBlockDevice, in BlockRequest request)
        => _work.Add(new Work(fd, isBlockDevice, request));

    private void Run()
    {
        foreach (var work in _work.GetConsumingEnumerable())
        {
            int error = SyncIo.Execute(work.Fd, work.IsBlockDevice, work.Request, ResultOverride);
            work.Request.Completion.Completed(work.Request.Tag, error);
        }
    }

    /// <summary>Finishes the requests already queued, then stops the threads.</summary>
    public void Dispose()
    {
        _work.CompleteAdding();
        foreach (var thread in _threads) thread.Join();
        _work.Dispose();
    }
}
