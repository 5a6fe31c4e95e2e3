using System.Collections;
using System.Management.Automation;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Session;

/// <summary>
/// A device as a user names it: a path (block device or image file), an NBD URI, or a mirror of the host, given as the
/// object New-MirrorDevice and Get-MirrorDevice return (live, or deserialized from remoting or Export-Clixml).
/// </summary>
public sealed class DeviceArgument
{
    private DeviceArgument(string? path, string? mirrorName)
    {
        Path = path;
        MirrorName = mirrorName;
    }

    public string? Path { get; }

    public string? MirrorName { get; }

    public static DeviceArgument FromPath(string path) => new(path, null);

    public static DeviceArgument FromMirror(string name) => new(null, name);

    /// <summary>
    /// How the host is told: a path resolved against this session's location (relative, PSDrive; the host has no
    /// location of its own) together with the text as typed, or a mirror by name.
    /// </summary>
    public Kcopyd.Protocol.DeviceRef ToRef(System.Management.Automation.PSCmdlet cmdlet) => MirrorName != null
        ? new() { Mirror = MirrorName }
        : Kcopyd.Engine.Nbd.NbdUri.IsNbdUri(Path) // another host's export: the URI goes as it is
            ? new() { Path = Path, Text = Path }
            : new() { Path = cmdlet.SessionState.Path.GetUnresolvedProviderPathFromPSPath(Path), Text = Path };

    public override string ToString() => Path ?? $"mirror '{MirrorName}'";
}

/// <summary>Turns what a user passes for a device (string, FileInfo, mirror object) into <see cref="DeviceArgument"/>s.</summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class DeviceArgumentTransformationAttribute : ArgumentTransformationAttribute
{
    private const string DeserializedMirror = "Deserialized." + nameof(Kcopyd) + ".Protocol.MirrorInfo";

    public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
    {
        object value = inputData is PSObject { BaseObject: not PSCustomObject } wrapped ? wrapped.BaseObject : inputData;
        if (value is IList list)
        {
            var devices = new DeviceArgument[list.Count];
            for (int i = 0; i < list.Count; i++) devices[i] = Convert(list[i]);
            return devices;
        }
        return Convert(inputData);
    }

    private static DeviceArgument Convert(object? item)
    {
        if (item is PSObject ps)
        {
            if (ps.TypeNames.Contains(DeserializedMirror) && ps.Properties["Name"]?.Value is string name)
                return DeviceArgument.FromMirror(name);
            item = ps.BaseObject;
        }
        return item switch
        {
            DeviceArgument device => device,
            string path when path.Length > 0 => DeviceArgument.FromPath(path),
            FileSystemInfo file => DeviceArgument.FromPath(file.FullName),
            Kcopyd.Protocol.MirrorInfo mirror => DeviceArgument.FromMirror(mirror.Name),
            _ => throw new ArgumentTransformationMetadataException(
                $"'{item}' is neither a path nor a mirror device (the object New-MirrorDevice or Get-MirrorDevice returns)."),
        };
    }
}
