using Kcopyd.Engine;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Registry;

/// <summary>
/// The devices one call opens for its job. The job closes them when it ends; a job that never starts (bad input,
/// -WhatIf) must not leave them open, so the caller closes them at once.
/// </summary>
internal sealed class DeviceScope(MirrorTable mirrors)
{
    private readonly List<IBlockDevice> _opened = [];

    /// <summary>
    /// Opens a path or an NBD URI with the engine's own checks, or finds a mirror of the host. Mirrors stay open: they belong
    /// to the host, not to the job.
    /// </summary>
    public IBlockDevice Open(DeviceRef device, DeviceOpenOptions options)
    {
        if (device.Mirror != null) return mirrors.Get(device.Mirror);
        string path = device.Path ?? throw new KcopydException("DeviceNotFound", KcopydErrorKind.InvalidArgument, "No device was named.");
        // A bare mirror name that is no file where the cmdlet ran names the mirror (Start-RegionCopy -Destination data).
        if (!Kcopyd.Engine.Nbd.NbdUri.IsNbdUri(path) && !File.Exists(path) && !Directory.Exists(path) && device.Text is { } text && mirrors.Exists(text)) return mirrors.Get(text);
        var opened = BlockDevices.Open(path, options);
        _opened.Add(opened);
        return opened;
    }

    /// <summary>
    /// Opens a destination: exclusively, so a mounted or claimed device (or an image file another writer holds)
    /// is refused, unless forced. For a mirror leg the refusal is LegInUse.
    /// </summary>
    public IBlockDevice OpenForWrite(DeviceRef reference, bool force, bool asLeg = false)
    {
        IBlockDevice device;
        try
        {
            device = Open(reference, DeviceOpenOptions.ReadWrite with { Exclusive = !force });
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

    /// <summary>The path devices opened so far (not the host's mirrors).</summary>
    public IReadOnlyList<IBlockDevice> Opened => _opened;

    public void CloseAll() => _opened.ForEach(d => d.Dispose());
}
