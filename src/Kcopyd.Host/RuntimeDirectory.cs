using Kcopyd.Host.State;

namespace Kcopyd.Host;

/// <summary>The directory that holds the control socket: /run/kcopyd, or KCOPYD_RUNTIME_DIR.</summary>
internal static class RuntimeDirectory
{
    public const string DefaultPath = "/run/kcopyd";
    public const string Variable = "KCOPYD_RUNTIME_DIR";
    public const UnixFileMode Mode = PrivateDirectory.Mode;

    public static string Resolve()
    {
        string? chosen = Environment.GetEnvironmentVariable(Variable);
        return Path.GetFullPath(string.IsNullOrEmpty(chosen) ? DefaultPath : chosen);
    }

    /// <summary>Creates the directory 0700, or accepts an existing one only if it is as private as a new one.</summary>
    public static void Prepare(string path) => PrivateDirectory.Prepare(path, "runtime directory", Variable, PrivateDirectory.OwnerOnly);
}
