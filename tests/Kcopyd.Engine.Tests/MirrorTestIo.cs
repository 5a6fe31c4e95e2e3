using System.Runtime.InteropServices;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// One request submitted to a device from a test, with its own aligned buffer cut into 64 KiB vectors (so a
/// request that a mirror splits at region boundaries exercises the slicing). Dispose frees the buffer only after
/// the request ended.
/// </summary>
internal sealed unsafe class PendingIo : IBlockCompletion, IDisposable
{
    private const int VectorBytes = 64 * 1024;
    private static readonly Lazy<IIoQueue> s_queue = new(() => IoQueueFactory.Create("test-submitter", 4));
    private readonly TaskCompletionSource<int> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private byte* _buffer;
    private IoVec* _vectors;

    private PendingIo(long lengthBytes)
    {
        LengthBytes = lengthBytes;
        if (lengthBytes == 0) return;
        _buffer = (byte*)NativeMemory.AlignedAlloc((nuint)lengthBytes, 4096);
        int count = (int)((lengthBytes + VectorBytes - 1) / VectorBytes);
        _vectors = (IoVec*)NativeMemory.Alloc((nuint)count, (nuint)sizeof(IoVec));
        for (int i = 0; i < count; i++)
        {
            _vectors[i].Base = (nint)(_buffer + (long)i * VectorBytes);
            _vectors[i].Length = (nint)Math.Min(VectorBytes, lengthBytes - (long)i * VectorBytes);
        }
        VectorCount = count;
    }

    public long LengthBytes { get; }

    private int VectorCount { get; }

    public Task<int> Task => _done.Task;

    public bool IsCompleted => _done.Task.IsCompleted;

    public static IIoQueue Queue => s_queue.Value;

    public static PendingIo Write(IBlockDevice device, long offsetBytes, byte[] data)
    {
        var io = new PendingIo(data.Length);
        data.CopyTo(new Span<byte>(io._buffer, data.Length));
        io.Submit(device, BlockOperation.Write, offsetBytes);
        return io;
    }

    public static PendingIo Read(IBlockDevice device, long offsetBytes, long lengthBytes)
    {
        var io = new PendingIo(lengthBytes);
        io.Submit(device, BlockOperation.Read, offsetBytes);
        return io;
    }

    public static PendingIo Flush(IBlockDevice device)
    {
        var io = new PendingIo(0);
        io.Submit(device, BlockOperation.Flush, 0);
        return io;
    }

    /// <summary>Writes and waits; returns the errno.</summary>
    public static int WriteAndWait(IBlockDevice device, long offsetBytes, byte[] data, TimeSpan timeout)
    {
        using var io = Write(device, offsetBytes, data);
        return io.Wait(timeout);
    }

    public static byte[] ReadAndWait(IBlockDevice device, long offsetBytes, long lengthBytes, TimeSpan timeout)
    {
        using var io = Read(device, offsetBytes, lengthBytes);
        int errno = io.Wait(timeout);
        Assert.True(errno == 0, $"Reading {device.Name}+{offsetBytes} failed with errno {errno}");
        return io.Data();
    }

    /// <summary>The errno the request ended with; fails the test if it did not end in time.</summary>
    public int Wait(TimeSpan timeout)
    {
        Assert.True(_done.Task.Wait(timeout), $"The request did not end within {timeout}.");
        return _done.Task.Result;
    }

    public byte[] Data() => new Span<byte>(_buffer, (int)LengthBytes).ToArray();

    public void Completed(int tag, int error) => _done.TrySetResult(error);

    public void Dispose()
    {
        // Memory the device may still write into is never freed: a test that gave up on a request leaks it.
        if (!_done.Task.IsCompleted) return;
        if (_buffer != null) NativeMemory.AlignedFree(_buffer);
        if (_vectors != null) NativeMemory.Free(_vectors);
        _buffer = null;
        _vectors = null;
    }

    private void Submit(IBlockDevice device, BlockOperation operation, long offsetBytes)
        => device.Submit(new BlockRequest(operation, offsetBytes, LengthBytes, new IoBuffers((nint)_vectors, VectorCount), this, 0), Queue);
}

/// <summary>
/// A real device whose reads (or another operation) are held while the gate is closed and then passed on: a disk
/// that is slow exactly when the test wants, so a recovery's I/O can be kept in flight while the test builds a scenario.
/// </summary>
internal sealed class GatedDevice(IBlockDevice inner, BlockOperation gated = BlockOperation.Read) : DelegatingDevice(inner)
{
    private readonly object _lock = new();
    private readonly List<(BlockRequest Request, IIoQueue Queue)> _held = new();
    private bool _open;

    public int Held { get { lock (_lock) return _held.Count; } }

    public override void Submit(in BlockRequest request, IIoQueue queue)
    {
        lock (_lock)
        {
            if (!_open && request.Operation == gated)
            {
                _held.Add((request, queue));
                return;
            }
        }
        Inner.Submit(request, queue);
    }

    public void Open()
    {
        List<(BlockRequest, IIoQueue)> held;
        lock (_lock)
        {
            _open = true;
            held = new(_held);
            _held.Clear();
        }
        foreach (var (request, queue) in held) Inner.Submit(request, queue);
    }
}

internal static class Wait
{
    /// <summary>Waits until <paramref name="condition"/> holds; fails the test naming <paramref name="what"/> if it does not in time.</summary>
    public static void Until(Func<bool> condition, TimeSpan timeout, string what)
        => Assert.True(SpinWait.SpinUntil(condition, timeout), $"Timed out after {timeout} waiting until {what}.");
}
