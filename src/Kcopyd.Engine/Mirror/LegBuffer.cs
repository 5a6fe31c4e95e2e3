using System.Runtime.InteropServices;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// An aligned native buffer for the mirror's own synchronous I/O (probing a leg, scrubbing a region). A request
/// that did not end in time keeps the buffer alive until it does: the memory is freed only once no I/O uses it.
/// </summary>
internal sealed unsafe class LegBuffer : IBlockCompletion, IDisposable
{
    private const int Alignment = 4096;
    private readonly object _lock = new();
    private readonly byte* _memory;
    private readonly IoVec* _vector;
    private TaskCompletionSource<int>? _pending;
    private bool _disposed;

    public LegBuffer(int lengthBytes)
    {
        LengthBytes = lengthBytes;
        _memory = (byte*)NativeMemory.AlignedAlloc((nuint)lengthBytes, Alignment);
        _vector = (IoVec*)NativeMemory.Alloc(1, (nuint)sizeof(IoVec));
    }

    public int LengthBytes { get; }

    public Span<byte> Span => new(_memory, LengthBytes);

    /// <summary>One read or write of the first <paramref name="lengthBytes"/> bytes; the errno, or ETIMEDOUT when it did not end in time.</summary>
    /// <remarks>
    /// <paramref name="cancellationToken"/> ends the wait (OperationCanceledException), not the I/O: a request
    /// left behind keeps the buffer until it ends.
    /// </remarks>
    public int Transfer(IBlockDevice device, IIoQueue queue, BlockOperation operation, long offsetBytes, int lengthBytes, TimeSpan timeout,
        CancellationToken cancellationToken = default)
    {
        var done = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_pending != null) return Errno.EBUSY; // the last request never ended: do not reuse the memory under it
            _pending = done;
        }
        _vector->Base = (nint)_memory;
        _vector->Length = lengthBytes;
        try
        {
            device.Submit(new BlockRequest(operation, offsetBytes, lengthBytes, new IoBuffers((nint)_vector, 1), this, 0), queue);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
        {
            Completed(0, Errno.EIO);
        }
        return done.Task.Wait(timeout, cancellationToken) ? done.Task.Result : Errno.ETIMEDOUT;
    }

    public void Completed(int tag, int error)
    {
        TaskCompletionSource<int>? done;
        bool free;
        lock (_lock)
        {
            done = _pending;
            _pending = null;
            free = _disposed;
        }
        done?.TrySetResult(error);
        if (free) Free();
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            if (_pending != null) return; // freed by the late completion
        }
        Free();
    }

    private void Free()
    {
        NativeMemory.AlignedFree(_memory);
        NativeMemory.Free(_vector);
    }
}
