using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// A real device behind a gate: a write submitted while the gate is shut blocks the submitting thread until
/// someone opens it, as a write into a mirror with an exhausted request pool blocks in mempool_alloc.
/// </summary>
public sealed class GatedDevice(IBlockDevice inner) : IBlockDevice
{
    private readonly ManualResetEventSlim _open = new(false);
    private readonly ManualResetEventSlim _entered = new(false);

    /// <summary>Name of the thread that blocked at the gate first.</summary>
    public string? BlockedThread { get; private set; }

    public string Name => inner.Name;

    public long SizeBytes => inner.SizeBytes;

    public int LogicalBlockSize => inner.LogicalBlockSize;

    public bool CanWrite => inner.CanWrite;

    public DeviceIdentity Identity => inner.Identity;

    public bool WaitUntilSomeoneBlocks(TimeSpan timeout) => _entered.Wait(timeout);

    public void Open() => _open.Set();

    public void Submit(in BlockRequest request, IIoQueue queue)
    {
        if (request.Operation != BlockOperation.Read && !_open.IsSet)
        {
            BlockedThread ??= Thread.CurrentThread.Name;
            _entered.Set();
            _open.Wait();
        }
        inner.Submit(request, queue);
    }

    public void Dispose()
    {
        _open.Set();
        inner.Dispose();
    }
}
