using System.Collections.Concurrent;
using Kcopyd.Protocol;

namespace Kcopyd.Client;

/// <summary>
/// One call in flight: what the host asked of the cmdlet during it, queued for the cmdlet's own thread (a cmdlet
/// may write and prompt only from its pipeline thread), which runs it while it waits for the answer.
/// </summary>
internal sealed class PendingCall(IOperationSink? sink)
{
    private readonly BlockingCollection<Action> _work = new();
    private volatile bool _cancelled;

    /// <summary>Runs on the pipeline thread: a question of the host, answered there; false once the call is cancelled.</summary>
    public Task<bool> Ask(Func<IOperationSink, bool> question)
    {
        if (sink == null || _cancelled) return Task.FromResult(false);
        var answer = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        _work.Add(() =>
        {
            try { answer.TrySetResult(!_cancelled && question(sink)); }
            catch (Exception e) { answer.TrySetException(e); }
        });
        if (_cancelled) answer.TrySetResult(false);
        return answer.Task;
    }

    /// <summary>Something to write on the pipeline thread; the host goes on at once.</summary>
    public void Post(Action<IOperationSink> write)
    {
        if (sink != null && !_cancelled) _work.Add(() => write(sink));
    }

    /// <summary>Ends the current wait in <see cref="RunQueued"/> at once (the answer came).</summary>
    public void Wake() => _work.Add(static () => { });

    /// <summary>Runs what is queued, waiting at most <paramref name="timeoutMilliseconds"/> for the first item.</summary>
    public void RunQueued(int timeoutMilliseconds)
    {
        if (!_work.TryTake(out var item, timeoutMilliseconds)) return;
        item();
        while (_work.TryTake(out item)) item();
    }

    /// <summary>Questions still queued or still to come are answered no.</summary>
    public void Cancel() => _cancelled = true;
}
