using Tmds.Linux;

namespace Kcopyd.Host.State;

/// <summary>A directory only root or the host's user can change: made 0700, or accepted if nobody else may write to it.</summary>
internal static class PrivateDirectory
{
    public const UnixFileMode Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary><paramref name="what"/> names the directory in the message of the HostStartException that refuses it.</summary>
    public static void Prepare(string path, string what)
    {
        int errno = Posix.Lstat(path, out stat st);
        if (errno == LibC.ENOENT)
        {
            Directory.CreateDirectory(path, Mode);
            File.SetUnixFileMode(path, Mode); // exactly 0700 whatever the umask
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
                + $"chown it, or set {StateDirectory.Variable} to another directory.");
        uint mode = (uint)st.st_mode;
        if ((mode & 0x12) != 0) // 0022: reading is harmless, but whoever may write could plant a mirror definition
            throw new HostStartException(
                $"The {what} '{path}' has mode {Convert.ToString(mode & 0xfff, 8)}; only its owner may write to it (chmod go-w '{path}').");
    }
}
