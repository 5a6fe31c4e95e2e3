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

    /// <summary>Puts back, ahead of the rest and in their order, jobs that could not run yet; empties <paramref name="jobs"/>.</summary>
    public void PushHeadAll(JobList jobs)
    {
        if (jobs._head == null) return;
        jobs._tail!.Next = _head;
        _head = jobs._head;
        _tail ??= jobs._tail;
        jobs._head = jobs._tail = null;
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
