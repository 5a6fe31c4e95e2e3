using System.Runtime.InteropServices;
using Tmds.Linux;

namespace Kcopyd.Engine.Native;

/// <summary>Turns errno values into readable messages and exceptions.</summary>
internal static class Errno
{
    public const int EIO = 5;
    public const int ENXIO = 6;
    public const int EBUSY = 16;
    public const int EINVAL = 22;
    public const int ENOTTY = 25;
    public const int EOPNOTSUPP = 95;
    public const int ECANCELED = 125;
    public const int ETIMEDOUT = 110;

    public static int Last => LibC.errno;

    public static unsafe string Describe(int errno)
    {
        byte* buffer = stackalloc byte[256];
        // The XSI strerror_r fills the buffer; the GNU one may return a static string instead.
        int rc = LibC.strerror_r(errno, buffer, 256);
        string? text = rc == 0 ? Marshal.PtrToStringUTF8((nint)buffer) : null;
        return string.IsNullOrEmpty(text) ? $"errno {errno}" : text;
    }
}
