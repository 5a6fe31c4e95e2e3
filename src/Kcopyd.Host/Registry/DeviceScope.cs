using Kcopyd.Engine;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Registry;

/// <summary>
/// The devices one call opens for its job. The job closes them when it ends; a job that never starts (bad input,
/// -WhatIf) must not leave them open, so the caller closes them at once.
/// </summary>
internal sealed class DeviceScope(MirrorTable mirrors, JobTable jobs)
{
    private readonly List<IBlockDevice> _opened = [];
    // What this call writes (destinations, legs, mirrors among them): a second name for one of them is a mistake.
    private readonly List<IBlockDevice> _written = [];

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
        catch (KcopydException ex) when (ex.ErrorId == "DeviceInUse" && ex.Target is string path)
        {
            throw NameTheHolder(ex, path, asLeg);
        }
        if (_written.FirstOrDefault(w => IsSameDevice(w, device)) is { } first) throw GivenTwice(device.Name, first);
        // A leg of a live mirror is written only through the mirror: a write beside it leaves the legs different
        // while the mirror calls them in sync. The OS locks cover other processes; this covers this one.
        if (!force && MirrorDevice.MirrorUsing(device) is { } owner && !ReferenceEquals(owner, device)) throw LegOf(device.Name, owner);
        _written.Add(device);
        return device;
    }

    /// <summary>
    /// An exclusive open failed: says who of ours holds the device (this very call, a mirror, a copy job), since the
    /// OS says only "busy"; otherwise the engine's refusal stands (it names a mount point where there is one).
    /// </summary>
    private KcopydException NameTheHolder(KcopydException inUse, string path, bool asLeg)
    {
        IBlockDevice probe;
        try
        {
            probe = BlockDevices.Open(path, DeviceOpenOptions.ReadOnly); // not exclusive: it only asks what the path is
        }
        catch (KcopydException)
        {
            return asLeg ? new KcopydException("LegInUse", inUse.Kind, inUse.Message, path, inUse) : inUse;
        }
        using (probe)
        {
            if (_written.FirstOrDefault(w => IsSameDevice(w, probe)) is { } first) return GivenTwice(path, first);
            if (MirrorDevice.MirrorUsing(probe) is { } owner) return LegOf(path, owner);
            if (jobs.Running.FirstOrDefault(j => j.Request.Destinations.Any(d => StorageExtent.Overlap(d.Device, probe))) is { } job)
                return new KcopydException(asLeg ? "LegInUse" : "DeviceInUse", KcopydErrorKind.ResourceBusy,
                    $"'{path}' is being written by copy job {job.Id}: wait for it (Wait-CopyJob -Id {job.Id}) or stop it (Stop-CopyJob -Id {job.Id}) first.", path);
        }
        return asLeg ? new KcopydException("LegInUse", inUse.Kind, inUse.Message, path, inUse) : inUse;
    }

    /// <summary>One device, or two names for all of the same bytes (a loop device and its whole backing file, a link).</summary>
    private static bool IsSameDevice(IBlockDevice a, IBlockDevice b)
        => ReferenceEquals(a, b) || a.Identity == b.Identity || (a.Storage == b.Storage && a.SizeBytes == b.SizeBytes);

    private static KcopydException GivenTwice(string path, IBlockDevice first)
        => new("DuplicateDevice", KcopydErrorKind.InvalidArgument,
            path == first.Name
                ? $"'{path}' is given twice: name each device once."
                : $"'{path}' is given twice: it is the same storage as '{first.Name}'. Name each device once.", path);

    private static KcopydException LegOf(string path, MirrorDevice owner)
        => new("LegInUse", KcopydErrorKind.ResourceBusy,
            $"'{path}' is a leg of mirror '{owner.Name}' (or shares its storage): write to the mirror instead, or use -Force.", path);

    /// <summary>The path devices opened so far (not the host's mirrors).</summary>
    public IReadOnlyList<IBlockDevice> Opened => _opened;

    public void CloseAll() => _opened.ForEach(d => d.Dispose());
}
