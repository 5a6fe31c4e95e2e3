using System.Text.Json;
using System.Text.RegularExpressions;
using Tmds.Linux;
using IOPath = System.IO.Path;

namespace Kcopyd.Host.State;

/// <summary>/var/lib/kcopyd, or KCOPYD_STATE_DIR: the mirrors the host assembles again at start, locked to one host.</summary>
internal sealed partial class StateDirectory : IDisposable
{
    public const string DefaultPath = "/var/lib/kcopyd";
    public const string Variable = "KCOPYD_STATE_DIR";
    public const string LockName = "host.lock";
    public const string SettingsName = "settings.json";
    public const string MirrorsName = "mirrors";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    private readonly object _gate = new(); // LoadMirrors removes temp files, so it must not run beside a save
    private readonly string _mirrors;
    private HostLock? _lock; // null once disposed

    private StateDirectory(string path, HostLock hostLock)
    {
        Path = path;
        _mirrors = IOPath.Combine(path, MirrorsName);
        _lock = hostLock;
    }

    public string Path { get; }

    // \z, not $: $ would let a name end in a newline.
    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]*\z")]
    private static partial Regex ValidName();

    public static string Resolve()
    {
        string? chosen = Environment.GetEnvironmentVariable(Variable);
        return IOPath.GetFullPath(string.IsNullOrEmpty(chosen) ? DefaultPath : chosen);
    }

    /// <summary>Prepares the directory and locks it for this object's life; a directory another host holds is refused.</summary>
    public static StateDirectory Open(string path)
    {
        path = IOPath.GetFullPath(path);
        PrivateDirectory.Prepare(path, "state directory", Variable);
        var hostLock = HostLock.Take(path);
        try
        {
            PrivateDirectory.Prepare(IOPath.Combine(path, MirrorsName), "mirrors directory", Variable);
        }
        catch
        {
            hostLock.Dispose();
            throw;
        }
        return new StateDirectory(path, hostLock);
    }

    public void SaveMirror(MirrorDefinition definition)
    {
        CheckName(definition.Name);
        byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(definition, Json);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_lock is null, this);
            AtomicFile.Write(_mirrors, definition.Name + ".json", bytes);
        }
    }

    /// <summary>Forgets a mirror; one that was never saved is no error.</summary>
    public void DeleteMirror(string name)
    {
        CheckName(name);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_lock is null, this);
            File.Delete(IOPath.Combine(_mirrors, name + ".json"));
            AtomicFile.SyncDirectory(_mirrors);
        }
    }

    /// <summary>Every mirrors/*.json by file name; one that cannot be used carries an Error and stays for an admin to look at.</summary>
    public IReadOnlyList<StoredMirror> LoadMirrors()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_lock is null, this);
            AtomicFile.RemoveLeftovers(_mirrors);
            var found = new List<StoredMirror>();
            foreach (string path in Directory.EnumerateFileSystemEntries(_mirrors, "*.json"))
            {
                string fileName = IOPath.GetFileName(path);
                string? error = Posix.ReadOwnFile(path, out byte[]? bytes);
                MirrorDefinition? definition = null;
                if (error is null)
                {
                    try { definition = JsonSerializer.Deserialize<MirrorDefinition>(bytes, Json); }
                    catch (JsonException e) { error = $"'{path}' is not a valid mirror definition: {e.Message}"; }
                    error ??= Problem(definition, fileName[..^".json".Length], path);
                }
                found.Add(error is null ? new(fileName, definition, null) : new(fileName, null, error));
            }
            found.Sort((a, b) => string.CompareOrdinal(a.FileName, b.FileName));
            return found;
        }
    }

    /// <summary>settings.json, or the defaults when it is missing or, with <paramref name="error"/> saying why, unusable.</summary>
    public HostSettings LoadSettings(out string? error)
    {
        string path = IOPath.Combine(Path, SettingsName);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_lock is null, this);
            AtomicFile.RemoveLeftovers(Path);
            error = null;
            if (Posix.Lstat(path, out _) == LibC.ENOENT) return new HostSettings();
            error = Posix.ReadOwnFile(path, out byte[]? bytes);
            HostSettings? settings = null;
            if (error is null)
            {
                try { settings = JsonSerializer.Deserialize<HostSettings>(bytes, Json); }
                catch (JsonException e) { error = $"'{path}' is not valid settings: {e.Message}"; }
            }
            if (error is null && (settings is null || settings.JobHistoryCount < 0 || settings.JobHistoryMaxAge < TimeSpan.Zero))
                error = $"'{path}' must hold an object with a JobHistoryCount and a JobHistoryMaxAge of zero or more.";
            return error is null ? settings! : new HostSettings();
        }
    }

    public void SaveSettings(HostSettings settings)
    {
        byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(settings, Json);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_lock is null, this);
            AtomicFile.Write(Path, SettingsName, bytes);
        }
    }

    /// <summary>Releases the lock, so another host may take the directory.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _lock?.Dispose();
            _lock = null;
        }
    }

    private static void CheckName(string name)
    {
        if (name is null || !ValidName().IsMatch(name))
            throw new ArgumentException(
                $"'{name}' is not a mirror name: letters, digits, '.', '_' and '-', starting with a letter or digit.", nameof(name));
    }

    /// <summary>Null when <paramref name="definition"/> can be assembled from a file named for <paramref name="name"/>.</summary>
    private static string? Problem(MirrorDefinition? definition, string name, string path) => definition switch
    {
        null => $"'{path}' holds null, not a mirror definition.",
        { FormatVersion: not MirrorDefinition.CurrentFormatVersion } =>
            $"'{path}' has format version {definition.FormatVersion}; this host reads version {MirrorDefinition.CurrentFormatVersion}.",
        _ when !ValidName().IsMatch(name) => $"'{path}' is not named for a mirror: '{name}' is not a mirror name.",
        _ when definition.Name != name => $"'{path}' defines the mirror '{definition.Name}', not '{name}'.",
        _ when definition.Legs is null || definition.Legs.Length == 0
            || definition.Legs.Any(leg => leg is null || string.IsNullOrEmpty(leg.Path) || leg.StableId is null) =>
            $"'{path}' lists no legs, or a leg without a path.",
        _ => null,
    };
}
