namespace Kcopyd.Engine.Copy;

/// <summary>
/// The mismatched ranges of a verified copy, merged as chunks report them (in any order) and bounded in count: a
/// destination that dropped every write is one range, not one per chunk; past <see cref="MaxRanges"/> disjoint
/// ranges only the byte count grows.
/// </summary>
internal sealed class MismatchList(string[] destinations)
{
    public const int MaxRanges = 64;

    private readonly object _lock = new();
    private readonly List<(int Destination, long Offset, long Length, bool Unreadable)> _ranges = new();
    private long _totalBytes;
    private int _omitted;

    public long TotalBytes { get { lock (_lock) return _totalBytes; } }

    public void Add(int destination, long offset, long length, bool unreadable)
    {
        lock (_lock)
        {
            _totalBytes += length;
            long end = offset + length;
            // Join the range that ends where this one starts and the one that starts where it ends, if they are alike.
            int before = _ranges.FindIndex(r => r.Destination == destination && r.Unreadable == unreadable && r.Offset + r.Length == offset);
            int after = _ranges.FindIndex(r => r.Destination == destination && r.Unreadable == unreadable && r.Offset == end);
            if (before >= 0 && after >= 0)
            {
                var (b, a) = (_ranges[before], _ranges[after]);
                _ranges[before] = b with { Length = a.Offset + a.Length - b.Offset };
                _ranges.RemoveAt(after);
            }
            else if (before >= 0) _ranges[before] = _ranges[before] with { Length = end - _ranges[before].Offset };
            else if (after >= 0) _ranges[after] = _ranges[after] with { Offset = offset, Length = end - offset };
            else if (_ranges.Count < MaxRanges) _ranges.Add((destination, offset, length, unreadable));
            else _omitted++;
        }
    }

    public CopyMismatch[] ToArray()
    {
        lock (_lock)
        {
            return _ranges.OrderBy(r => r.Destination).ThenBy(r => r.Offset)
                .Select(r => new CopyMismatch(destinations[r.Destination], r.Offset, r.Length, r.Unreadable)).ToArray();
        }
    }

    /// <summary>The job's error text, per destination; null when everything read back as written.</summary>
    public string? Describe()
    {
        lock (_lock)
        {
            if (_totalBytes == 0) return null;
            var parts = _ranges.GroupBy(r => r.Destination).OrderBy(g => g.Key).Select(g =>
                $"'{destinations[g.Key]}' did not read back as the source in {g.Count()} range(s) ({g.Sum(r => r.Length)} bytes), " +
                $"the first at {g.Min(r => r.Offset)}.");
            string text = "Verify failed: " + string.Join(" ", parts);
            return _omitted > 0 ? $"{text} {_omitted} more chunk(s) differed past the first {MaxRanges} ranges ({_totalBytes} bytes in all)." : text;
        }
    }
}
