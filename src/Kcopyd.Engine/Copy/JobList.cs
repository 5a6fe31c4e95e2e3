namespace Kcopyd.Engine.Copy;

/// <summary>An intrusive FIFO of sub-jobs (no allocation per push). Callers hold the worker's job lock.</summary>
internal sealed class JobList
{
    private SubJob? _head;
    private SubJob? _tail;

    public bool IsEmpty => _head == null;

    public void PushTail(SubJob job)
    {
        job.Next = null;
        if (_tail == null) _head = job; else _tail.Next = job;
        _tail = job;
    }

    /// <summary>Puts back a job that could not run yet, so it keeps its turn.</summary>
    public void PushHead(SubJob job)
    {
        job.Next = _head;
        _head = job;
        _tail ??= job;
    }

    public SubJob? PopHead()
    {
        var job = _head;
        if (job == null) return null;
        _head = job.Next;
        if (_head == null) _tail = null;
        job.Next = null;
        return job;
    }
}
