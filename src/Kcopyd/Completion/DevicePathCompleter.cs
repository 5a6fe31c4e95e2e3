using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using System.Management.Automation.Runspaces;
using System.Text;
using Kcopyd.Engine.Devices;
using Tmds.Linux;

namespace Kcopyd.Completion;

/// <summary>
/// Completes what a device parameter takes: block devices that have storage (an unattached loop device, which has
/// none, and /dev/loop-control are not offered), image files, directories to walk into, and the host's mirror names.
/// </summary>
public sealed class DevicePathCompleter : IArgumentCompleter
{
    private const int MaxResults = 1000;

    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        string word = CompletionText.Unquote(wordToComplete);
        // A name with a slash is a path: the host is not asked then.
        var mirrors = word.Contains('/') ? [] : MirrorNameCompleter.Complete(word);
        return [.. mirrors, .. Paths(word)];
    }

    private static IEnumerable<CompletionResult> Paths(string word)
    {
        try { return PathsOrThrow(word); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return [];
        }
    }

    private static IEnumerable<CompletionResult> PathsOrThrow(string word)
    {
        int slash = word.LastIndexOf('/');
        string typedFolder = slash < 0 ? "" : word[..(slash + 1)];
        string prefix = word[(slash + 1)..];
        string folder = Resolve(typedFolder);
        if (!Directory.Exists(folder)) return [];
        var options = new EnumerationOptions { IgnoreInaccessible = true, AttributesToSkip = 0, ReturnSpecialDirectories = false };
        return Directory.EnumerateFileSystemEntries(folder, "*", options)
            .Select(Path.GetFileName)
            .OfType<string>()
            .Where(name => name.StartsWith(prefix, StringComparison.Ordinal) && (name[0] != '.' || prefix.StartsWith('.')))
            .Order(StringComparer.Ordinal)
            .Select(name => Describe(typedFolder + name, Path.Combine(folder, name)))
            .OfType<CompletionResult>()
            .Take(MaxResults)
            .ToArray();
    }

    /// <summary>The folder typed so far as a path of this session: relative to its location, ~ for home.</summary>
    private static string Resolve(string typedFolder)
    {
        if (typedFolder.StartsWith('/')) return typedFolder;
        if (typedFolder.StartsWith("~/", StringComparison.Ordinal))
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), typedFolder[2..]);
        return Path.Combine(CurrentLocation() ?? Environment.CurrentDirectory, typedFolder);
    }

    /// <summary>The session's file-system location (the process's directory is not it: Set-Location does not change that).</summary>
    private static string? CurrentLocation()
    {
        if (Runspace.DefaultRunspace == null) return null;
        try
        {
            using var ps = PowerShell.Create(RunspaceMode.CurrentRunspace);
            return ps.AddCommand("Get-Location").AddParameter("PSProvider", "FileSystem").Invoke<PathInfo>().FirstOrDefault()?.ProviderPath;
        }
        catch (RuntimeException)
        {
            return null;
        }
    }

    /// <summary>A completion for a directory, a block device with storage or a regular file; null for anything else.</summary>
    private static unsafe CompletionResult? Describe(string text, string path)
    {
        stat st;
        byte[] name = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = name)
        {
            if (LibC.stat(p, &st) != 0) return null;
        }
        uint type = (uint)st.st_mode & (uint)LibC.S_IFMT;
        string leaf = Path.GetFileName(path);
        if (type == (uint)LibC.S_IFDIR)
            return CompletionText.Result(text + "/", leaf + "/", CompletionResultType.ProviderContainer, $"directory {Path.GetFullPath(path)}");
        if (type == (uint)LibC.S_IFREG)
            return CompletionText.Result(text, leaf, CompletionResultType.ProviderItem, $"image file, {Size((long)st.st_size)}");
        if (type != (uint)LibC.S_IFBLK) return null;
        string sysfs = DeviceNumber.SysfsFolder((ulong)st.st_rdev);
        if (!long.TryParse(ReadSysfs(Path.Combine(sysfs, "size")), out long sectors) || sectors <= 0) return null;
        string? backing = ReadSysfs(Path.Combine(sysfs, "loop", "backing_file"));
        return CompletionText.Result(text, leaf, CompletionResultType.ProviderItem,
            $"block device, {Size(sectors * 512)}" + (backing != null ? $", loop over {backing}" : ""));
    }

    private static string? ReadSysfs(string path)
    {
        try { return File.ReadAllText(path).Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    private static string Size(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        double value = bytes;
        int unit = 0;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        return unit == 0 ? $"{bytes} B" : $"{value:0.#} {units[unit]}";
    }
}
