namespace Kcopyd.Engine.Devices;

/// <summary>
/// Says who holds a block device that an exclusive open found busy, as the system tells it: a mount point (of the
/// device or of a partition on it, from /proc/self/mountinfo) or a device stacked on it (sysfs holders/). A refusal
/// that names the holder tells the admin what to unmount or stop; "another program" is the answer of last resort.
/// </summary>
internal static class DeviceHolders
{
    /// <summary>"mounted on /mnt/x", "held by dm-0 (a device stacked on it)", or null when the system names nobody.</summary>
    public static string? Describe(ulong rdev)
    {
        var numbers = new List<ulong> { rdev };
        numbers.AddRange(Partitions(rdev));
        if (MountPoint(numbers) is { } mounted)
            return numbers[0] == mounted.Dev ? $"mounted on {mounted.Path}" : $"its partition {DeviceName(mounted.Dev)} is mounted on {mounted.Path}";
        foreach (ulong dev in numbers)
        {
            string holders = Path.Combine(DeviceNumber.SysfsFolder(dev), "holders");
            try
            {
                if (Directory.Exists(holders) && Directory.EnumerateFileSystemEntries(holders).Select(Path.GetFileName).FirstOrDefault() is { } holder)
                    return $"held by {holder} (a device stacked on it)";
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return null;
    }

    private static (ulong Dev, string Path)? MountPoint(List<ulong> numbers)
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/mountinfo"))
            {
                // "36 35 98:0 /root /mnt/point rw ..." : the third field is the device, the fifth where it is mounted.
                string[] fields = line.Split(' ');
                if (fields.Length > 4 && DeviceNumber.TryParse(fields[2], out ulong dev) && numbers.Contains(dev))
                    return (dev, Unescape(fields[4]));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return null;
    }

    // The kernel writes a space, tab, newline and backslash in a mount point as octal escapes (\040 ...).
    private static string Unescape(string field)
        => System.Text.RegularExpressions.Regex.Replace(field, @"\\([0-7]{3})", m => ((char)Convert.ToInt32(m.Groups[1].Value, 8)).ToString());

    private static IEnumerable<ulong> Partitions(ulong disk)
    {
        string folder = DeviceNumber.SysfsFolder(disk);
        string[] children;
        try { children = Directory.Exists(folder) ? Directory.GetDirectories(folder) : []; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { yield break; }
        foreach (string child in children)
        {
            string dev = Path.Combine(child, "dev");
            if (File.Exists(Path.Combine(child, "partition")) && File.Exists(dev) && DeviceNumber.TryParse(File.ReadAllText(dev), out ulong number))
                yield return number;
        }
    }

    private static string DeviceName(ulong dev) => Path.GetFileName(DeviceNumber.RealSysfsFolder(dev));
}
