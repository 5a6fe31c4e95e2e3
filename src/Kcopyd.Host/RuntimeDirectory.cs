using Tmds.Linux;

namespace Kcopyd.Host;

/// <summary>The directory that holds the control socket: /run/kcopyd, or KCOPYD_RUNTIME_DIR.</summary>
internal static class RuntimeDirectory
{
    public const string DefaultPath = "/run/kcopyd";
    public const string Variable = "KCOPYD_RUNTIME_DIR";
    public const UnixFileMode Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    public static string Resolve()
    {
        string? chosen = Environment.GetEnvironmentVariable(Variable);
        return Path.GetFullPath(string.IsNullOrEmpty(chosen) ? DefaultPath : chosen);
    }

    /// <summary>Creates the directory 0700, or accepts an existing one only if it is as private as a new one.</summary>
    public static unsafe void Prepare(string path)
    {
        if (!Directory.Exists(path))
        {
            try
            {
                Directory.CreateDirectory(path, Mode);
                File.SetUnixFileMode(path, Mode); // exactly 0700 whatever the umask
            }
            catch (Exception e) when (e is UnauthorizedAccessException or IOException)
            {
                throw new HostStartException($"Cannot create the runtime directory '{path}': {e.Message}");
            }
        }
        // Checked after creating too: another process may have made the directory first, with its own owner and mode.
        stat st;
        fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(path + "\0"))
            if (LibC.lstat(p, &st) != 0)
                throw new HostStartException(
                    $"Cannot stat the runtime directory '{path}': {new System.ComponentModel.Win32Exception(LibC.errno).Message}");
        uint euid = LibC.geteuid();
        uint mode = (uint)st.st_mode;
        if ((mode & (uint)LibC.S_IFMT) != (uint)LibC.S_IFDIR)
            throw new HostStartException($"The runtime directory '{path}' is not a directory (a link is not followed).");
        if (st.st_uid != 0 && st.st_uid != euid)
            throw new HostStartException($"The runtime directory '{path}' belongs to uid {st.st_uid}, not to root or uid {euid}.");
        if ((mode & 0x3f) != 0) // any group or other bit: 0077
            throw new HostStartException(
                $"The runtime directory '{path}' has mode {Convert.ToString(mode & 0xfff, 8)}; it must allow its owner only (0700).");
    }
}
