using System.Runtime.InteropServices;

namespace Kcopyd.Engine.Native;

/// <summary>The loop driver's status ioctl (include/uapi/linux/loop.h), to find the file or device behind a /dev/loopN.</summary>
internal static class LoopIoctl
{
    public const int LOOP_GET_STATUS64 = 0x4C05;
}

/// <summary>struct loop_info64: 232 bytes, every field naturally aligned.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LoopInfo64
{
    /// <summary>st_dev of the backing file, in the kernel's dev_t encoding (the one stat returns).</summary>
    public ulong Device;
    public ulong Inode;
    /// <summary>st_rdev of the backing file: non-zero when the loop sits on a block device.</summary>
    public ulong RDevice;
    public ulong Offset;
    public ulong SizeLimit;
    public uint Number;
    public uint EncryptType;
    public uint EncryptKeySize;
    public uint Flags;
    public fixed byte FileName[64];
    public fixed byte CryptName[64];
    public fixed byte EncryptKey[32];
    public fixed ulong Init[2];
}
