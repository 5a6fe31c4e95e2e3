using System.Management.Automation;
using Kcopyd.Engine;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Session;

/// <summary>
/// The devices one cmdlet call opens for its job. The job closes them when it ends; a job that never starts
/// (bad input, -WhatIf) must not leave them open, so the caller closes them at once.
/// </summary>
internal sealed class DeviceScope(PSCmdlet cmdlet)
{
    private readonly List<IBlockDevice> _opened = [];

    /// <summary>
    /// Opens a path as the user typed it (relative, PSDrive) with the engine's own checks, or finds a mirror of
    /// this session. Mirrors stay open: they belong to the session, not to the job.
    /// </summary>
    public IBlockDevice Open(DeviceArgument argument, DeviceOpenOptions options)
    {
        if (argument.MirrorName != null) return KcopydSession.GetMirror(argument.MirrorName);
        string path = cmdlet.SessionState.Path.GetUnresolvedProviderPathFromPSPath(argument.Path);
        // A bare mirror name that is no file here names the mirror (Start-RegionCopy -Destination data).
        if (!File.Exists(path) && !Directory.Exists(path) && KcopydSession.MirrorExists(argument.Path!)) return KcopydSession.GetMirror(argument.Path!);
        var device = LinuxBlockDevice.Open(path, options);
        _opened.Add(device);
        return device;
    }

    /// <summary>
    /// Opens a destination: exclusively, so a mounted or claimed device (or an image file another writer holds)
    /// is refused, unless forced. For a mirror leg the refusal is LegInUse.
    /// </summary>
    public IBlockDevice OpenForWrite(DeviceArgument argument, bool force, bool asLeg = false)
    {
        IBlockDevice device;
        try
        {
            device = Open(argument, DeviceOpenOptions.ReadWrite with { Exclusive = !force });
        }
        catch (KcopydException ex) when (asLeg && ex.ErrorId == "DeviceInUse")
        {
            throw new KcopydException("LegInUse", ex.Kind, ex.Message, ex.Target, ex);
        }
        // A leg of a live mirror is written only through the mirror: a write beside it leaves the legs different
        // while the mirror calls them in sync. The OS locks cover other processes; this covers this one.
        if (!force && MirrorDevice.MirrorUsing(device) is { } owner && !ReferenceEquals(owner, device))
        {
            throw new KcopydException("LegInUse", KcopydErrorKind.ResourceBusy,
                $"'{device.Name}' is a leg of mirror '{owner.Name}' (or shares its storage): write to the mirror instead, or use -Force.", device.Name);
        }
        return device;
    }

    /// <summary>The path devices opened so far (not the session's mirrors).</summary>
    public IReadOnlyList<IBlockDevice> Opened => _opened;

    public void CloseAll() => _opened.ForEach(d => d.Dispose());
}
