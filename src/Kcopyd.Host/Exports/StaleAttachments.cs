using Kcopyd.Host.State;
using Tmds.Linux;

namespace Kcopyd.Host.Exports;

/// <summary>
/// The block devices a killed host leaves: a loop device over the FUSE file of an nbdfuse whose export is gone (its
/// I/O fails), in a folder of the runtime directory's exports/. At the next start those nobody holds are detached
/// and their folders unmounted and removed; one still mounted cannot be taken from its user and is reported.
/// </summary>
internal static class StaleAttachments
{
    /// <summary>The folder an attachment mounts its FUSE file in: exports/MIRROR-XXXXXXXX.fuse.</summary>
    public const string FolderSuffix = ".fuse";

    public sealed record Held(string Mirror, string DevicePath);

    /// <summary>Cleans up after every attachment folder in <paramref name="exportsFolder"/>; call it before any export attaches.</summary>
    public static IReadOnlyList<Held> Remove(string exportsFolder, TextWriter log)
    {
        var held = new List<Held>();
        if (!Directory.Exists(exportsFolder)) return held;
        var loops = LoopBackings();
        foreach (string folder in Directory.GetDirectories(exportsFolder, "*" + FolderSuffix))
        {
            string mirror = MirrorOf(folder);
            bool keep = false;
            foreach (var (device, backing) in loops.Where(l => l.Backing.StartsWith(folder + "/", StringComparison.Ordinal)))
            {
                if (IsHeld(device))
                {
                    held.Add(new Held(mirror, device));
                    keep = true;
                    continue;
                }
                var (code, _, errors) = BlockAttachment.Run("losetup", "-d", device);
                log.WriteLine(code == 0 ? $"Detached {device}, left by mirror '{mirror}''s export before the host restarted." : $"Could not detach {device} ({backing}): {errors.Trim()}");
                keep |= code != 0;
            }
            // A mount still under a held loop device stays until its user lets go; the next start tries again.
            if (!keep) BlockAttachment.Unmount(folder);
        }
        return held;
    }

    /// <summary>
    /// Mounted or open exclusively: O_EXCL fails with EBUSY. Only the open is tried; the device's I/O fails, so
    /// nothing that reads it (as opening a Kcopyd device does, for its sizes) can tell.
    /// </summary>
    private static bool IsHeld(string device)
    {
        int fd = Posix.Open(device, LibC.O_RDONLY | LibC.O_EXCL | LibC.O_CLOEXEC);
        if (fd < 0) return LibC.errno == LibC.EBUSY;
        LibC.close(fd);
        return false;
    }

    /// <summary>Every attached loop device and the file it is over (/sys/block/loopN/loop/backing_file).</summary>
    private static List<(string Device, string Backing)> LoopBackings()
    {
        var found = new List<(string, string)>();
        foreach (string sys in Directory.GetDirectories("/sys/block", "loop*"))
        {
            try
            {
                string backing = File.ReadAllText(Path.Combine(sys, "loop", "backing_file")).Trim();
                if (backing.EndsWith(" (deleted)", StringComparison.Ordinal)) backing = backing[..^" (deleted)".Length];
                found.Add(("/dev/" + Path.GetFileName(sys), backing));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // not attached
        }
        return found;
    }

    private static string MirrorOf(string folder)
    {
        string name = Path.GetFileName(folder)[..^FolderSuffix.Length];
        int dash = name.LastIndexOf('-');
        return dash > 0 ? name[..dash] : name;
    }
}
