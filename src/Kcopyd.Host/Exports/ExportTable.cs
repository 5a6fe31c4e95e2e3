namespace Kcopyd.Host.Exports;

/// <summary>The exports the host serves now, by mirror. What is published is kept in the mirrors' definitions (a restarted host serves it again).</summary>
internal sealed class ExportTable
{
    private readonly List<MirrorExport> _exports = [];

    public void Add(MirrorExport export)
    {
        lock (_exports) _exports.Add(export);
    }

    public MirrorExport[] Of(string mirror)
    {
        lock (_exports) return _exports.Where(e => e.Mirror.Equals(mirror, StringComparison.OrdinalIgnoreCase)).ToArray();
    }

    public MirrorExport[] All
    {
        get { lock (_exports) return [.. _exports]; }
    }

    public void Remove(MirrorExport export)
    {
        lock (_exports) _exports.Remove(export);
    }

    /// <summary>How Get-MirrorDevice shows them: each URI, and its block device.</summary>
    public string[] Describe(string mirror) => Of(mirror).Select(e => e.Info().ToString()).ToArray();

    /// <summary>Ends every export (block devices first), bounded by each server's stop.</summary>
    public void StopAll()
    {
        foreach (var export in All)
        {
            Remove(export);
            export.StopAsync().Wait(TimeSpan.FromSeconds(30));
        }
    }
}
