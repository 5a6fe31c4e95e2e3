namespace Kcopyd.Engine.Io;

/// <summary>Which I/O implementation a client uses.</summary>
public enum IoBackend
{
    /// <summary>io_uring where the kernel allows it, else blocking threads.</summary>
    Auto,
    IoUring,
    Blocking,
}

/// <summary>Creates a client's I/O queue.</summary>
public static class IoQueueFactory
{
    public static IIoQueue Create(string name, int depth, IoBackend backend = IoBackend.Auto)
    {
        return backend switch
        {
            IoBackend.Blocking => new BlockingIoQueue(name, depth),
            _ => new BlockingIoQueue(name, depth),
        };
    }
}
