using System.Management.Automation;
using Kcopyd.Engine.Devices;

namespace Kcopyd.Session;

/// <summary>
/// The devices one cmdlet call opens for its job. The job closes them when it ends; a job that never starts
/// (bad input, -WhatIf) must not leave them open, so the caller closes them at once.
/// </summary>
internal sealed class DeviceScope(PSCmdlet cmdlet)
{
    private readonly List<IBlockDevice> _opened = [];

    /// <summary>Opens a path as the user typed it (relative, PSDrive) with the engine's own checks.</summary>
    public IBlockDevice Open(string path, DeviceOpenOptions options)
    {
        var device = LinuxBlockDevice.Open(cmdlet.SessionState.Path.GetUnresolvedProviderPathFromPSPath(path), options);
        _opened.Add(device);
        return device;
    }

    /// <summary>Opens a destination: exclusively, so a mounted or claimed device is refused, unless forced.</summary>
    public IBlockDevice OpenForWrite(string path, bool force)
        => Open(path, DeviceOpenOptions.ReadWrite with { Exclusive = !force });

    public void CloseAll() => _opened.ForEach(d => d.Dispose());
}
