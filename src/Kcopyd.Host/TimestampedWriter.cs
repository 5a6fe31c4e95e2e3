using System.Text;

namespace Kcopyd.Host;

/// <summary>The host's log: each line stamped with the time, since an admin reads it after the fact.</summary>
internal sealed class TimestampedWriter(TextWriter inner) : TextWriter
{
    private volatile TextWriter _inner = inner;
    // Lines written before the log file took over (assembling mirrors at start): the file gets them too.
    private List<string>? _early = [];

    /// <summary>Where lines go from now on (the log file, once the host let go of its starter's pipes).</summary>
    public TextWriter Inner
    {
        set
        {
            foreach (string line in Interlocked.Exchange(ref _early, null) ?? []) value.WriteLine(line);
            _inner = value;
        }
    }

    public override Encoding Encoding => _inner.Encoding;

    public override void WriteLine(string? value)
    {
        var target = _inner;
        string line = $"{DateTimeOffset.Now:yyyy-MM-dd HH:mm:ss.fff zzz} [{Environment.ProcessId}] {value}";
        _early?.Add(line);
        target.WriteLine(line);
        target.Flush();
    }

    public override void Write(char value) => _inner.Write(value);
}
