using Kcopyd.Engine.Io;
using Microsoft.Extensions.ObjectPool;

namespace Kcopyd.Engine.Devices;

/// <summary>
/// Stands between a <see cref="LinuxBlockDevice"/>'s request and the caller's completion, so the device knows when
/// its last request ended and may close its fd. Pooled: the common path allocates nothing.
/// </summary>
internal sealed class InFlightCompletion : IBlockCompletion
{
    // Enough for every request of a few busy clients at once; beyond it the extra ones are simply collected.
    private const int MaxRetained = 4096;

    private static readonly ObjectPool<InFlightCompletion> s_pool =
        new DefaultObjectPoolProvider { MaximumRetained = MaxRetained }.Create<InFlightCompletion>();

    private LinuxBlockDevice? _device;
    private IBlockCompletion? _inner;

    public static InFlightCompletion Rent(LinuxBlockDevice device, IBlockCompletion inner)
    {
        var completion = s_pool.Get();
        completion._device = device;
        completion._inner = inner;
        return completion;
    }

    public void Completed(int tag, int error)
    {
        var device = _device!;
        var inner = _inner!;
        // Back in the pool before the caller hears of it: the caller may submit its next request from inside.
        Abandon();
        try
        {
            inner.Completed(tag, error);
        }
        finally
        {
            // After the caller's completion, so a device disposed in there still closes only once this request is done.
            device.EndRequest();
        }
    }

    /// <summary>Returns a wrapper whose request never reached a queue.</summary>
    public void Abandon()
    {
        _device = null;
        _inner = null;
        s_pool.Return(this);
    }
}
