namespace Kcopyd.Engine.Copy;

/// <summary>The life of a copy job.</summary>
public enum CopyJobState
{
    Queued,
    Running,
    Completed,
    /// <summary>A read or write failed (with IgnoreErrors the job still went on to the end).</summary>
    Failed,
    /// <summary>Stopped on request before the end; BytesCopied says how far it got.</summary>
    Stopped,
    /// <summary>
    /// Stop was asked: no new chunk starts, and the job waits for the I/O it has in flight (IoInFlight) to return,
    /// however long a hung device takes; then it is Stopped (or Completed, Failed) and its pages are back in the pool.
    /// </summary>
    Stopping,
}
