using Kcopyd.Engine.Devices;
using Microsoft.Win32.SafeHandles;

namespace Kcopyd.Engine.Mirror;

/// <summary>Placeholder for the safe log opener (replaced by the real one on merge).</summary>
public sealed class LogFile : IDisposable
{
    private LogFile(string path, SafeFileHandle handle, bool created)
    {
        Path = path;
        Handle = handle;
        Created = created;
    }

    public string Path { get; }

    public SafeFileHandle Handle { get; }

    public bool Created { get; }

    public DeviceIdentity Identity => default;

    public ulong FilesystemDevice => 0;

    public static LogFile Open(string path, bool createIfMissing)
    {
        bool existed = File.Exists(path);
        if (!existed && !createIfMissing) throw new KcopydException("InvalidLogPath", KcopydErrorKind.NotFound, $"The mirror log '{path}' does not exist.", path);
        var handle = File.OpenHandle(path, createIfMissing ? FileMode.OpenOrCreate : FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        return new LogFile(path, handle, !existed);
    }

    public void DeleteIfCreated()
    {
        if (Created) File.Delete(Path);
    }

    public void Dispose() => Handle.Dispose();
}
