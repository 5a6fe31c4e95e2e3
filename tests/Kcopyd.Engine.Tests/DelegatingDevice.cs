using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;

namespace Kcopyd.Engine.Tests;

/// <summary>A real device seen through a wrapper that changes only how requests reach it.</summary>
internal abstract class DelegatingDevice(IBlockDevice inner) : IBlockDevice
{
    protected IBlockDevice Inner => inner;

    public string Name => inner.Name;

    public long SizeBytes => inner.SizeBytes;

    public int LogicalBlockSize => inner.LogicalBlockSize;

    public bool CanWrite => inner.CanWrite;

    public DeviceIdentity Identity => inner.Identity;

    public StorageExtent Storage => inner.Storage;

    public string StableId => inner.StableId;

    public abstract void Submit(in BlockRequest request, IIoQueue queue);

    public virtual void Dispose() => inner.Dispose();
}
