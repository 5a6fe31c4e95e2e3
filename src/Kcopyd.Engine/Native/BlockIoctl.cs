using System.Runtime.InteropServices;

namespace Kcopyd.Engine.Native;

/// <summary>Linux block-device ioctl request codes (include/uapi/linux/fs.h) and the vectored calls Tmds.LibC lacks.</summary>
internal static unsafe class BlockIoctl
{
    public const int BLKSSZGET = 0x1268;                         // _IO(0x12,104): logical block size
    public static readonly int BLKGETSIZE64 = unchecked((int)0x80081272); // _IOR(0x12,114,size_t): size in bytes
    public const int BLKZEROOUT = 0x127F;                         // _IO(0x12,127): zero a byte range
    public const int BLKDISCARD = 0x1277;                         // _IO(0x12,119)
    public const int FALLOC_FL_KEEP_SIZE = 0x01;
    public const int FALLOC_FL_PUNCH_HOLE = 0x02;
    public const int FALLOC_FL_ZERO_RANGE = 0x10;

    [DllImport("libc", SetLastError = true)]
    public static extern nint preadv(int fd, IoVec* iov, int iovcnt, long offset);

    [DllImport("libc", SetLastError = true)]
    public static extern nint pwritev(int fd, IoVec* iov, int iovcnt, long offset);
}

/// <summary>struct iovec.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct IoVec
{
    public nint Base;
    public nint Length;
}
