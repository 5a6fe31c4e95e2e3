using System.Globalization;

namespace Kcopyd.Protocol;

/// <summary>
/// Sizes, rates and durations as people read them: the format views, progress and messages all call these, so a
/// size reads the same everywhere. Binary units (B, KiB, MiB, GiB, TiB), at most four digits, so a column of 8 holds any.
/// </summary>
public static class Units
{
    private static readonly string[] s_units = ["B", "KiB", "MiB", "GiB", "TiB"];

    /// <summary>4096 is "4 KiB", 1536 "1.5 KiB", 123456789 "118 MiB": one decimal below 100, none above.</summary>
    public static string Size(long bytes)
    {
        double value = bytes;
        int unit = 0;
        while (Math.Abs(value) >= 1024 && unit < s_units.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        string number = unit == 0 ? bytes.ToString(CultureInfo.CurrentCulture) : value.ToString(Math.Abs(value) < 100 ? "0.#" : "0", CultureInfo.CurrentCulture);
        return $"{number} {s_units[unit]}";
    }

    /// <summary>"4 KiB (4,096 bytes)": readable, and exact for whoever compares it with a device's size.</summary>
    public static string SizeAndBytes(long bytes)
        => Math.Abs(bytes) < 1024 ? Size(bytes) : $"{Size(bytes)} ({bytes.ToString("N0", CultureInfo.CurrentCulture)} bytes)";

    /// <summary>"98.5 MiB/s".</summary>
    public static string Rate(long bytesPerSecond) => Size(bytesPerSecond) + "/s";

    /// <summary>A limit in bytes per second, where 0 is none.</summary>
    public static string Limit(long bytesPerSecond) => bytesPerSecond > 0 ? Rate(bytesPerSecond) : "none";

    /// <summary>
    /// "0.004 s", "12.5 s" under a minute (so a short job does not read 0), then "0:01:02", "27:03:00" (hours, minutes,
    /// seconds); empty for none. At most 8 characters below 100 hours.
    /// </summary>
    public static string Duration(TimeSpan? duration)
    {
        if (duration is not { } d) return "";
        if (d < TimeSpan.Zero) d = TimeSpan.Zero;
        double seconds = d.TotalSeconds;
        if (seconds < 60) return $"{seconds.ToString(seconds < 1 ? "0.0##" : seconds < 10 ? "0.0#" : "0.#", CultureInfo.CurrentCulture)} s";
        return $"{(long)d.TotalHours}:{d.Minutes:00}:{d.Seconds:00}";
    }

    /// <summary>A percentage in at most four characters: "100", "37.5", "0"; rounded down, so only what is done reads "100".</summary>
    public static string Percent(double percent) => (Math.Floor(percent * 10) / 10).ToString("0.#", CultureInfo.CurrentCulture);
}
