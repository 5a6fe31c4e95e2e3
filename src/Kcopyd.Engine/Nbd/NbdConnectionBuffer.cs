using System.Buffers;
using System.Runtime.InteropServices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Memory;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Nbd;

/// <summary>The data of one READ or WRITE: aligned native memory (for O_DIRECT) with its iovec and a Memory view for the socket.</summary>
/// <remarks>Freed exactly once, by whoever holds the request when it ends: the writer, or a completion that comes too late.</remarks>
internal sealed unsafe class NbdConnectionBuffer : MemoryManager<byte>
{
    private readonly NbdServer _owner;
    private byte* _data;
    private IoVec* _vector;

    public NbdConnectionBuffer(NbdServer owner, int lengthBytes)
    {
        _owner = owner;
        LengthBytes = lengthBytes;
        _data = (byte*)NativeMemory.AlignedAlloc((nuint)lengthBytes, PagePool.Alignment);
        _vector = (IoVec*)NativeMemory.Alloc((nuint)sizeof(IoVec));
        _vector->Base = (nint)_data;
        _vector->Length = lengthBytes;
        owner.BufferAllocated();
    }

    public int LengthBytes { get; }

    public IoBuffers Buffers => new((nint)_vector, 1);

    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(_data == null, this);
        return new Span<byte>(_data, LengthBytes);
    }

    // Native memory never moves, so pinning is only handing out the pointer.
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ObjectDisposedException.ThrowIf(_data == null, this);
        return new MemoryHandle(_data + elementIndex);
    }

    public override void Unpin()
    {
    }

    /// <summary>Frees the memory. Only once no device and no socket operation can touch it any more.</summary>
    public void Free() => ((IDisposable)this).Dispose();

    protected override void Dispose(bool disposing)
    {
        if (_data == null) return;
        NativeMemory.AlignedFree(_data);
        NativeMemory.Free(_vector);
        _data = null;
        _vector = null;
        _owner.BufferFreed();
    }
}
