namespace Kcopyd.Engine.Io;

/// <summary>
/// Asynchronous submission and completion of requests on file descriptors. Each copy client owns one, so no
/// client's I/O ever waits behind another client's queue.
/// </summary>
public interface IIoQueue : IDisposable
{
    string Name { get; }

    /// <summary>"io_uring" or "blocking".</summary>
    string Backend { get; }

    /// <summary>
    /// Starts a request on <paramref name="fd"/>. Never waits for the I/O; the completion runs on the queue's own
    /// thread. May wait briefly for a free submission slot when the queue is full.
    /// </summary>
    void Submit(int fd, bool isBlockDevice, in BlockRequest request);
}
