namespace Kcopyd.Engine.Devices;

/// <summary>Splits a dev_t into major and minor the way glibc's gnu_dev_major/minor do, and finds its sysfs folder.</summary>
public static class DeviceNumber
{
    public static uint Major(ulong dev) => (uint)(((dev >> 8) & 0xfff) | ((dev >> 32) & 0xfffff000));

    public static uint Minor(ulong dev) => (uint)((dev & 0xff) | ((dev >> 12) & 0xffffff00));

    public static ulong Make(uint major, uint minor)
        => ((ulong)(major & 0xfff) << 8) | ((ulong)(major & 0xfffff000) << 32) | (minor & 0xffu) | ((ulong)(minor & 0xffffff00) << 12);

    /// <summary>"major:minor", as sysfs and /proc/partitions write it.</summary>
    public static string Format(ulong dev) => $"{Major(dev)}:{Minor(dev)}";

    public static string SysfsFolder(ulong dev) => $"/sys/dev/block/{Format(dev)}";

    /// <summary>
    /// Where <see cref="SysfsFolder"/> links to (…/block/sdb/sdb1 for a partition, inside its disk's folder). Needed
    /// to reach a parent: .NET folds "link/.." away as text, where the kernel would have followed the link.
    /// </summary>
    public static string RealSysfsFolder(ulong dev)
    {
        string folder = SysfsFolder(dev);
        try
        {
            return new DirectoryInfo(folder).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? folder;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return folder;
        }
    }

    /// <summary>Parses a sysfs <c>dev</c> file ("8:16").</summary>
    public static bool TryParse(string? text, out ulong dev)
    {
        dev = 0;
        if (text == null) return false;
        int colon = text.IndexOf(':');
        if (colon < 0 || !uint.TryParse(text.AsSpan(0, colon), out uint major) || !uint.TryParse(text.AsSpan(colon + 1).Trim(), out uint minor))
            return false;
        dev = Make(major, minor);
        return true;
    }
}
