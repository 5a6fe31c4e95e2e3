using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// A real device behind a gate that blocks the submitting thread: a write submitted while the gate is shut waits
/// in Submit until someone opens it, as a write into a mirror with an exhausted request pool waits in
/// mempool_alloc.
/// </summary>
internal sealed class BlockingGateDevice(IBlockDevice inner) : DelegatingDevice(inner)
{
    private readonly ManualResetEventSlim _open = new(false);
    private readonly ManualResetEventSlim _entered = new(false);

    /// <summary>Name of the thread that blocked at the gate first.</summary>
    public string? BlockedThread { get; private set; }

    public bool WaitUntilSomeoneBlocks(TimeSpan timeout) => _entered.Wait(timeout);

    public void Open() => _open.Set();

    public override void Submit(in BlockRequest request, IIoQueue queue)
    {
        if (request.Operation != BlockOperation.Read && !_open.IsSet)
        {
            BlockedThread ??= Thread.CurrentThread.Name;
            _entered.Set();
            _open.Wait();
        }
        Inner.Submit(request, queue);
    }

    public override void Dispose()
    {
        _open.Set();
        base.Dispose();
    }
}
