using System.Runtime.InteropServices;

namespace Kcopyd.Engine.Memory;

/// <summary>
/// One aligned, read-only buffer of zeros for devices without a zero-range fast path: the kernel's ZERO_PAGE.
/// It is never written, so sharing it between clients shares no state.
/// </summary>
internal static unsafe class ZeroBuffer
{
    public const long LengthBytes = 1 << 20;
    public static readonly nint Address = Allocate();

    private static nint Allocate()
    {
        void* p = NativeMemory.AlignedAlloc((nuint)LengthBytes, 4096);
        NativeMemory.Clear(p, (nuint)LengthBytes);
        return (nint)p;
    }
}
