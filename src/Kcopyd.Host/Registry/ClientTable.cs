using System.Collections.Concurrent;
using Kcopyd.Engine;
using Kcopyd.Engine.Copy;

namespace Kcopyd.Host.Registry;

/// <summary>
/// The host's named copy clients, each with its own worker, lists, lock and page pool (the seed's isolation): a job
/// stuck on one client's slow device holds only that client's pages. The default one is created on first use.
/// </summary>
internal sealed class ClientTable
{
    public const string DefaultName = "default";

    /// <summary>The most pages one client may own: 4 GiB of 64 KiB pages, allocated when the client is made.</summary>
    public const int MaxPageCount = 65536;

    private readonly ConcurrentDictionary<string, CopyClient> _clients = new(StringComparer.OrdinalIgnoreCase);

    public int Count => _clients.Count;

    public IEnumerable<CopyClient> All => Default().Concat(_clients.Values.Where(c => !IsDefault(c.Name)).OrderBy(c => c.Name, StringComparer.OrdinalIgnoreCase));

    /// <summary>The default client's I/O backend, once it exists (asking must not create it).</summary>
    public string? DefaultIoBackend => _clients.TryGetValue(DefaultName, out var client) ? client.IoBackend : null;

    public CopyClient Get(string? name)
    {
        name = string.IsNullOrEmpty(name) ? DefaultName : name;
        if (_clients.TryGetValue(name, out var client)) return client;
        if (!IsDefault(name))
            throw new KcopydException("ClientNotFound", KcopydErrorKind.NotFound, $"There is no copy client named '{name}'. New-CopyClient makes one.", name);
        return _clients.GetOrAdd(DefaultName, _ => new CopyClient(new CopyClientOptions { Name = DefaultName }));
    }

    /// <summary>A new client; its pages are allocated now, so a pool too big for this machine fails here, not mid-copy.</summary>
    public CopyClient Create(CopyClientOptions options)
    {
        if (Exists(options.Name)) throw AlreadyExists(options.Name);
        if (options.PageCount > MaxPageCount)
            throw new KcopydException("InvalidClientOptions", KcopydErrorKind.InvalidArgument,
                $"A client has at most {MaxPageCount} pages ({(long)MaxPageCount * options.PageSizeBytes >> 20} MiB), not {options.PageCount}.", options.PageCount);
        CopyClient client;
        try { client = new CopyClient(options); }
        catch (ArgumentException e)
        {
            throw new KcopydException("InvalidClientOptions", KcopydErrorKind.InvalidArgument, FirstLine(e.Message), options.Name);
        }
        catch (OutOfMemoryException)
        {
            throw new KcopydException("InvalidClientOptions", KcopydErrorKind.InvalidArgument,
                $"The host cannot allocate {(long)options.PageCount * options.PageSizeBytes >> 20} MiB of pages for client '{options.Name}'.", options.Name);
        }
        if (!_clients.TryAdd(options.Name, client))
        {
            client.Dispose();
            throw AlreadyExists(options.Name);
        }
        return client;
    }

    /// <summary>Forgets the client: new jobs cannot find it. The caller frees it once its jobs have ended.</summary>
    public CopyClient Take(string name)
    {
        var client = Get(name);
        RefuseDefault(client.Name);
        _clients.TryRemove(client.Name, out _);
        return client;
    }

    /// <summary>The default one always exists: it is made on first use.</summary>
    public bool Exists(string name) => IsDefault(name) || _clients.ContainsKey(name);

    public static KcopydException AlreadyExists(string name)
        => new("ClientExists", KcopydErrorKind.AlreadyExists, $"A copy client named '{name}' exists already.", name);

    public static void RefuseDefault(string name)
    {
        if (IsDefault(name))
            throw new KcopydException("ClientIsDefault", KcopydErrorKind.InvalidOperation,
                "The default client cannot be removed: it serves every copy that names no -Client.", name);
    }

    /// <summary>Frees every client; one with a job still on a hung device cannot be (its pages are under that I/O).</summary>
    public void DisposeAll(bool jobsEnded)
    {
        if (jobsEnded)
            foreach (var client in _clients.Values) client.Dispose();
        _clients.Clear();
    }

    public static bool IsDefault(string name) => name.Equals(DefaultName, StringComparison.OrdinalIgnoreCase);

    private IEnumerable<CopyClient> Default() => [Get(DefaultName)];

    // ArgumentOutOfRangeException's message ends with "(Parameter 'SubJobSizeBytes')" and "Actual value was ...":
    // the first line without the engine's property name says it.
    private static string FirstLine(string message)
    {
        string line = message.Split('\n')[0].Trim();
        int parameter = line.IndexOf(" (Parameter '", StringComparison.Ordinal);
        return parameter > 0 ? line[..parameter] : line;
    }
}
