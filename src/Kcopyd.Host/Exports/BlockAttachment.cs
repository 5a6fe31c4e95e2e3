using System.Diagnostics;
using Kcopyd.Engine;
using Kcopyd.Engine.Devices;

namespace Kcopyd.Host.Exports;

/// <summary>
/// An export attached as a kernel block device. This kernel has no nbd driver, so nbdfuse makes the export a file
/// through FUSE and losetup makes that file /dev/loopN (direct I/O, so every request reaches the export). Where
/// `modprobe nbd` works, nbd-client would do it in one step; that is for a later day. A host that is killed leaves
/// the device failing every I/O, as a kernel nbd device does whose server died; <see cref="StaleAttachments"/>
/// cleans it up at the next start, which attaches a new one.
/// </summary>
internal sealed class BlockAttachment : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private readonly Process _fuse;
    private readonly string _mount;

    private BlockAttachment(Process fuse, string mount, string device)
    {
        _fuse = fuse;
        _mount = mount;
        DevicePath = device;
    }

    public string DevicePath { get; }

    /// <summary>Mounts the export under <paramref name="folder"/> (created 0700) and attaches a loop device over it.</summary>
    public static BlockAttachment Attach(string uri, string folder)
    {
        Directory.CreateDirectory(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string file = Path.Combine(folder, "disk");
        var start = new ProcessStartInfo("nbdfuse") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        start.ArgumentList.Add(file);
        start.ArgumentList.Add(uri);
        Process fuse;
        try { fuse = Process.Start(start)!; }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new KcopydException("BlockDeviceUnavailable", KcopydErrorKind.InvalidOperation,
                $"Cannot attach the export as a block device: nbdfuse did not start ({e.Message}; it is in Debian's libnbd-bin, with fuse3).", uri);
        }
        var clock = Stopwatch.StartNew();
        while (!File.Exists(file))
        {
            if (fuse.HasExited || clock.Elapsed > Bound)
            {
                string said = fuse.HasExited ? fuse.StandardError.ReadToEnd().Trim() : $"no file after {Bound.TotalSeconds:0} s";
                Stop(fuse, folder);
                throw new KcopydException("BlockDeviceUnavailable", KcopydErrorKind.DeviceError, $"nbdfuse could not mount the export: {said}", uri);
            }
            Thread.Sleep(20);
        }
        var (code, output, errors) = Run("losetup", "--find", "--show", "--direct-io=on", file);
        if (code != 0)
        {
            Stop(fuse, folder);
            throw new KcopydException("BlockDeviceUnavailable", KcopydErrorKind.DeviceError, $"losetup could not attach the export: {errors.Trim()}", uri);
        }
        return new BlockAttachment(fuse, folder, output.Trim());
    }

    /// <summary>Mounted or held open exclusively (the same check a copy's destination gets).</summary>
    public bool InUse => IsInUse(DevicePath);

    /// <summary>A device that does not answer counts as in use: nobody can tell it is not.</summary>
    private static bool IsInUse(string device)
    {
        try
        {
            using var probe = BlockDevices.Open(device, DeviceOpenOptions.ReadOnly with { Exclusive = true });
            return false;
        }
        catch (KcopydException e) when (e.ErrorId is "DeviceInUse" or "DeviceNotResponding")
        {
            return true;
        }
    }

    /// <summary>Detaches the loop device, unmounts the FUSE file and ends nbdfuse, each bounded.</summary>
    public void Dispose()
    {
        Run("losetup", "-d", DevicePath);
        Stop(_fuse, _mount);
    }

    private static void Stop(Process fuse, string mount)
    {
        bool unmounted = TryUnmount(mount);
        if (!fuse.WaitForExit((int)Bound.TotalMilliseconds))
        {
            Run("fusermount3", "-uz", mount);
            fuse.Kill(entireProcessTree: true);
        }
        fuse.Dispose();
        if (unmounted) RemoveFolder(mount);
    }

    /// <summary>Unmounts an attachment's FUSE folder and removes it; its nbdfuse, alive or not, then ends with the mount.</summary>
    public static void Unmount(string mount)
    {
        if (!TryUnmount(mount)) Run("fusermount3", "-uz", mount);
        RemoveFolder(mount);
    }

    /// <summary>The loop driver lets go of the FUSE file a moment after losetup -d: tried a few times.</summary>
    private static bool TryUnmount(string mount)
    {
        for (int attempt = 1; attempt <= 5; attempt++)
        {
            if (!IsMountPoint(mount) || Run("fusermount3", "-u", mount).Code == 0) return true;
            Thread.Sleep(100 * attempt);
        }
        return false;
    }

    private static bool IsMountPoint(string path)
        => File.ReadLines("/proc/self/mountinfo").Any(line => line.Split(' ') is { Length: > 4 } fields && fields[4].Replace("\\040", " ") == path);

    private static void RemoveFolder(string mount)
    {
        try { Directory.Delete(mount); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    internal static (int Code, string Output, string Errors) Run(string file, params string[] arguments)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit((int)Bound.TotalMilliseconds))
        {
            process.Kill(entireProcessTree: true);
            return (-1, "", $"{file} did not finish in {Bound.TotalSeconds:0} s");
        }
        return (process.ExitCode, output.Result, errors.Result);
    }
}
