namespace Kcopyd.Engine.Nbd;

/// <summary>The requests and buffer bytes one connection has in flight, from its header read until its reply is sent.</summary>
/// <remarks>Only the connection's reader waits here, so there is one waiter at most; releases come from the writer and never block.</remarks>
internal sealed class NbdConnectionBudget(int maxRequests, long maxBytes)
{
    private readonly object _lock = new();
    private int _requests;
    private long _bytes;
    private TaskCompletionSource? _waiter;

    public int Requests
    {
        get { lock (_lock) return _requests; }
    }

    /// <summary>Takes one request and <paramref name="bytes"/> of buffer, waiting while either is short.</summary>
    public async ValueTask TakeAsync(long bytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_requests < maxRequests && _bytes + bytes <= maxBytes)
                {
                    _requests++;
                    _bytes += bytes;
                    return;
                }
                wait = Arm();
            }
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public void Release(long bytes)
    {
        TaskCompletionSource? waiter;
        lock (_lock)
        {
            _requests--;
            _bytes -= bytes;
            waiter = _waiter;
            _waiter = null;
        }
        // Continuations run asynchronously: the caller may be the writer, which must not run the reader's loop.
        waiter?.TrySetResult();
    }

    /// <summary>Completes once nothing is in flight.</summary>
    public async Task WhenEmptyAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_requests == 0) return;
                wait = Arm();
            }
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private Task Arm()
    {
        _waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return _waiter.Task;
    }
}
