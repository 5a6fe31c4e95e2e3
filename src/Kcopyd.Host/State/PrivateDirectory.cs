using Tmds.Linux;

namespace Kcopyd.Host.State;

/// <summary>
/// A directory only root or the host's user can change: made 0700, or accepted if it is a real directory of theirs
/// without the forbidden mode bits (the state directory: no group or other write; the runtime directory: none at all).
/// </summary>
internal static class PrivateDirectory
{
    public const UnixFileMode Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Group and other may not write (0022): reading is harmless, but a writer could plant a mirror definition.</summary>
    public const uint NoOthersWriting = 0x12;

    /// <summary>Group and other may do nothing (0077): not even reach the control socket's name.</summary>
    public const uint OwnerOnly = 0x3f;

    /// <summary><paramref name="what"/> and <paramref name="variable"/> name the directory in the HostStartException that refuses it.</summary>
    public static void Prepare(string path, string what, string variable, uint forbiddenModeBits = NoOthersWriting)
    {
        int errno = Posix.Lstat(path, out stat st);
        if (errno == LibC.ENOENT)
        {
            try
            {
                Directory.CreateDirectory(path, Mode);
                File.SetUnixFileMode(path, Mode); // exactly 0700 whatever the umask
            }
            catch (Exception e) when (e is UnauthorizedAccessException or IOException)
            {
                throw new HostStartException($"Cannot create the {what} '{path}': {e.Message}");
            }
            // Checked after creating too: another process may have made the directory first, with its own owner and mode.
            errno = Posix.Lstat(path, out st);
        }
        if (errno != 0)
            throw new HostStartException($"Cannot stat the {what} '{path}': {Posix.Describe(errno)}");
        if (Posix.Type(st) != (uint)LibC.S_IFDIR)
            throw new HostStartException($"The {what} '{path}' is not a directory (a link is not followed).");
        if (!Posix.IsOurs(st))
            throw new HostStartException(
                $"The {what} '{path}' belongs to uid {st.st_uid}, not to root or uid {LibC.geteuid()}; "
                + $"chown it, or set {variable} to another directory.");
        uint mode = (uint)st.st_mode;
        if ((mode & forbiddenModeBits) != 0)
            throw new HostStartException(
                $"The {what} '{path}' has mode {Convert.ToString(mode & 0xfff, 8)}; " +
                (forbiddenModeBits == OwnerOnly ? $"it must allow its owner only (chmod 0700 '{path}')." : $"only its owner may write to it (chmod go-w '{path}')."));
    }
}
