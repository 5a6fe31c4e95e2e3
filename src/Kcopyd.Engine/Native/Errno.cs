using System.Runtime.InteropServices;
using Tmds.Linux;

namespace Kcopyd.Engine.Native;

/// <summary>Turns errno values into readable messages and exceptions.</summary>
internal static class Errno
{
    public const int EIO = 5;
    public const int ENXIO = 6;
    public const int EBUSY = 16;
    public const int ENODEV = 19;
    public const int EINVAL = 22;
    public const int ENOTTY = 25;
    public const int ENOSPC = 28;
    public const int EROFS = 30;
    public const int ENOTCONN = 107;
    public const int ESHUTDOWN = 108;
    public const int EOPNOTSUPP = 95;
    public const int ECANCELED = 125;
    public const int ETIMEDOUT = 110;

    public static int Last => LibC.errno;

    // The symbolic names an admin searches for; strerror's text alone differs between C libraries and locales.
    private static readonly Dictionary<int, string> Names = new()
    {
        [1] = "EPERM", [2] = "ENOENT", [4] = "EINTR", [EIO] = "EIO", [ENXIO] = "ENXIO", [9] = "EBADF", [11] = "EAGAIN",
        [12] = "ENOMEM", [13] = "EACCES", [14] = "EFAULT", [EBUSY] = "EBUSY", [ENODEV] = "ENODEV", [EINVAL] = "EINVAL",
        [ENOTTY] = "ENOTTY", [27] = "EFBIG", [ENOSPC] = "ENOSPC", [EROFS] = "EROFS", [32] = "EPIPE", [61] = "ENODATA",
        [67] = "ENOLINK", [84] = "EILSEQ", [EOPNOTSUPP] = "EOPNOTSUPP", [104] = "ECONNRESET", [ENOTCONN] = "ENOTCONN",
        [ESHUTDOWN] = "ESHUTDOWN", [ETIMEDOUT] = "ETIMEDOUT", [121] = "EREMOTEIO", [ECANCELED] = "ECANCELED",
        [122] = "EDQUOT",
    };

    /// <summary>The symbolic name (ENOSPC), or errno N for one without a name here.</summary>
    public static string Name(int errno) => Names.TryGetValue(errno, out var name) ? name : $"errno {errno}";

    /// <summary>The text and the name: "No space left on device (ENOSPC)".</summary>
    public static string DescribeNamed(int errno) => $"{Describe(errno)} ({Name(errno)})";

    public static unsafe string Describe(int errno)
    {
        byte* buffer = stackalloc byte[256];
        // The XSI strerror_r fills the buffer; the GNU one may return a static string instead.
        int rc = LibC.strerror_r(errno, buffer, 256);
        string? text = rc == 0 ? Marshal.PtrToStringUTF8((nint)buffer) : null;
        return string.IsNullOrEmpty(text) ? $"errno {errno}" : text;
    }
}
