namespace Kcopyd.Engine.Tests;

/// <summary>
/// How many cases the fuzzers run: their default counts times KCOPYD_FUZZ_SCALE (1 when unset; the build's Reliability
/// task sets more), and where they say how many they ran: a line appended to the file KCOPYD_FUZZ_REPORT names, which
/// that task turns into the reliability report's fuzz figures. The seeds stay fixed whatever the scale.
/// </summary>
internal static class FuzzScale
{
    public static int Times(int cases)
    {
        string? scale = Environment.GetEnvironmentVariable("KCOPYD_FUZZ_SCALE");
        if (string.IsNullOrEmpty(scale)) return cases;
        if (!int.TryParse(scale, out int factor) || factor < 1) throw new InvalidOperationException($"KCOPYD_FUZZ_SCALE must be a whole number of at least 1, not '{scale}'.");
        return checked(cases * factor);
    }

    /// <summary>Appends "fuzzer<TAB>figures" to the report file, when one is asked for.</summary>
    public static void Report(string fuzzer, string figures)
    {
        string? path = Environment.GetEnvironmentVariable("KCOPYD_FUZZ_REPORT");
        if (string.IsNullOrEmpty(path)) return;
        lock (typeof(FuzzScale)) File.AppendAllText(path, $"{fuzzer}\t{figures}\n");
    }
}
