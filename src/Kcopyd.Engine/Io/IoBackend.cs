using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Io;

/// <summary>Which I/O implementation a client uses.</summary>
public enum IoBackend
{
    /// <summary>io_uring where the kernel allows it, else blocking threads (see <see cref="IoQueueFactory"/>).</summary>
    Auto,
    IoUring,
    Blocking,
}

/// <summary>Creates a client's I/O queue.</summary>
/// <remarks>
/// <see cref="IoBackend.Auto"/> honours the environment variable <c>KCOPYD_IO_BACKEND</c>: <c>blocking</c> forces the
/// thread backend, <c>io_uring</c> insists on the ring (and fails when the kernel refuses it); unset, empty or
/// <c>auto</c> tries io_uring and falls back. It exists for admins on kernels where io_uring is present but
/// unwelcome (a buggy version, a seccomp policy that kills instead of failing) without changing any script.
/// An explicit <see cref="IoBackend.IoUring"/> or <see cref="IoBackend.Blocking"/> is never overridden.
/// </remarks>
public static class IoQueueFactory
{
    public const string EnvironmentVariable = "KCOPYD_IO_BACKEND";

    /// <summary>Creates a queue of up to <paramref name="depth"/> requests in flight, on the backend chosen as above.</summary>
    public static IIoQueue Create(string name, int depth, IoBackend backend = IoBackend.Auto)
        => Create(name, depth, backend, Environment.GetEnvironmentVariable(EnvironmentVariable), TryCreateIoUring);

    /// <summary>The factory with its environment and its ring setup passed in, so tests can stand in for a kernel without io_uring.</summary>
    internal static IIoQueue Create(string name, int depth, IoBackend backend, string? environmentValue, TryCreateQueue tryIoUring)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        var chosen = Resolve(backend, environmentValue);
        if (chosen == IoBackend.Blocking) return new BlockingIoQueue(name, depth);

        int error = tryIoUring(name, depth, out var queue);
        if (error == 0) return queue!;
        if (chosen == IoBackend.IoUring)
        {
            string why = backend == IoBackend.Auto ? $" ({EnvironmentVariable}={environmentValue})" : "";
            throw new KcopydException("IoUringUnavailable", KcopydErrorKind.InvalidOperation,
                $"The io_uring backend was asked for{why}, but io_uring_setup failed: {Errno.Describe(error)}. " +
                "The kernel may lack io_uring, or kernel.io_uring_disabled may forbid it; use the blocking backend instead.", name);
        }
        // ENOSYS (no io_uring), EPERM (kernel.io_uring_disabled or seccomp), ENOMEM (locked-memory limit on older
        // kernels) and anything else: the blocking threads do the same job, only slower.
        return new BlockingIoQueue(name, depth);
    }

    internal delegate int TryCreateQueue(string name, int depth, out IIoQueue? queue);

    /// <summary>Turns the requested backend and the environment variable into IoUring, Blocking, or Auto (try, then fall back).</summary>
    internal static IoBackend Resolve(IoBackend backend, string? environmentValue)
    {
        if (backend != IoBackend.Auto) return backend;
        return environmentValue?.Trim().ToLowerInvariant() switch
        {
            null or "" or "auto" => IoBackend.Auto,
            "blocking" => IoBackend.Blocking,
            "io_uring" or "iouring" or "uring" => IoBackend.IoUring,
            // A typo must not silently pick a backend the admin did not mean.
            _ => throw new KcopydException("InvalidIoBackend", KcopydErrorKind.InvalidArgument,
                $"{EnvironmentVariable}='{environmentValue}' is not a backend: use blocking, io_uring or auto.", environmentValue),
        };
    }

    private static int TryCreateIoUring(string name, int depth, out IIoQueue? queue)
    {
        int error = IoUringQueue.TryCreate(name, depth, out var ring);
        queue = ring;
        return error;
    }
}
