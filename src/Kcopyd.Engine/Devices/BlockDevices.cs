using Kcopyd.Engine.Nbd;

namespace Kcopyd.Engine.Devices;

/// <summary>Opens what a user names as a device: an NBD URI (another host's export) or a path (block device or image file).</summary>
public static class BlockDevices
{
    /// <summary>
    /// How long opening a path may take. A loop device over a file on a stalled filesystem (FUSE, NFS) hangs in the
    /// kernel when its identity is read (the loop status ioctl stats the file), and so does stat on a hung mount.
    /// </summary>
    public static TimeSpan OpenTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>A path's open is bounded by <see cref="OpenTimeout"/> (DeviceNotResponding); an NBD URI bounds its own connect.</summary>
    public static IBlockDevice Open(string pathOrUri, DeviceOpenOptions options)
        => NbdUri.IsNbdUri(pathOrUri) ? NbdDevice.Open(pathOrUri, options) : OpenPath(pathOrUri, options);

    private static LinuxBlockDevice OpenPath(string path, DeviceOpenOptions options)
    {
        // On a thread of the pool, so a hung kernel call holds that thread rather than the caller; a device that
        // arrives after the caller gave up is closed then.
        var open = Task.Run(() => LinuxBlockDevice.Open(path, options));
        // The wait handle, not Task.Wait: that throws an AggregateException for a failed open, which must keep its own type.
        if (!((IAsyncResult)open).AsyncWaitHandle.WaitOne(OpenTimeout))
        {
            open.ContinueWith(t => { if (t.IsCompletedSuccessfully) t.Result.Dispose(); }, TaskScheduler.Default);
            throw new KcopydException("DeviceNotResponding", KcopydErrorKind.DeviceError,
                $"'{path}' did not answer within {OpenTimeout.TotalSeconds:0} s: the storage under it is hung " +
                "(a loop device over a file on a stalled filesystem, or a disk that stopped answering). Nothing was written.", path);
        }
        return open.GetAwaiter().GetResult();
    }
}
