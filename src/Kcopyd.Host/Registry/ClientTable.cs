using System.Collections.Concurrent;
using Kcopyd.Engine;
using Kcopyd.Engine.Copy;

namespace Kcopyd.Host.Registry;

/// <summary>The host's named copy clients; the default one is created on first use.</summary>
internal sealed class ClientTable
{
    public const string DefaultName = "default";

    private readonly ConcurrentDictionary<string, CopyClient> _clients = new(StringComparer.OrdinalIgnoreCase);

    public int Count => _clients.Count;

    /// <summary>The default client's I/O backend, once it exists (asking must not create it).</summary>
    public string? DefaultIoBackend => _clients.TryGetValue(DefaultName, out var client) ? client.IoBackend : null;

    public CopyClient Get(string? name)
    {
        name = string.IsNullOrEmpty(name) ? DefaultName : name;
        if (_clients.TryGetValue(name, out var client)) return client;
        if (!name.Equals(DefaultName, StringComparison.OrdinalIgnoreCase))
            throw new KcopydException("ClientNotFound", KcopydErrorKind.NotFound, $"There is no copy client named '{name}'.", name);
        return _clients.GetOrAdd(DefaultName, _ => new CopyClient(new CopyClientOptions { Name = DefaultName }));
    }

    /// <summary>Frees every client; one with a job still on a hung device cannot be (its pages are under that I/O).</summary>
    public void DisposeAll(bool jobsEnded)
    {
        if (jobsEnded)
            foreach (var client in _clients.Values) client.Dispose();
        _clients.Clear();
    }
}
