using System.Numerics;
using System.Text;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Nbd;

/// <summary>What an <see cref="NbdServer"/> exports: one device under one name, and how clients may use it.</summary>
public sealed class NbdExport
{
    public const int DefaultPreferredBlockSize = 64 * 1024;
    public const int DefaultMaxRequestBytes = 32 * 1024 * 1024;

    /// <summary>The protocol's ceiling on a preferred block size worth advertising.</summary>
    private const int MaxPreferredBlockSize = 32 * 1024 * 1024;

    public NbdExport(IBlockDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        Device = device;
        // Both put every completed write where a flush on any fd (any leg) makes it durable, so a flush on one
        // connection covers the writes of all of them: what NBD_FLAG_CAN_MULTI_CONN promises.
        MultiConn = device is LinuxBlockDevice or MirrorDevice;
        PreferredBlockSize = device is MirrorDevice mirror && mirror.RegionSizeBytes <= MaxPreferredBlockSize
            ? (int)mirror.RegionSizeBytes
            : DefaultPreferredBlockSize;
    }

    /// <summary>The device served. The server does not own it: dispose it after the server has stopped.</summary>
    public IBlockDevice Device { get; }

    /// <summary>The export's name. A client asking for "" (the protocol's default export) gets this export too.</summary>
    public string Name { get; init; } = "";

    /// <summary>Shown by clients that ask (NBD_INFO_DESCRIPTION, NBD_OPT_LIST); empty sends none.</summary>
    public string Description { get; init; } = "";

    /// <summary>Refuse every write with EPERM. A device that cannot write is always exported read-only.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>A hint for clients: the mirror's region size, else 64 KiB. Rounded down to a power of two and clamped.</summary>
    public int PreferredBlockSize { get; init; }

    /// <summary>The largest READ or WRITE accepted (TRIM and WRITE_ZEROES carry no data and may be longer).</summary>
    public int MaxRequestBytes { get; init; } = DefaultMaxRequestBytes;

    /// <summary>Advertise NBD_FLAG_CAN_MULTI_CONN. Set by default for a LinuxBlockDevice or a MirrorDevice only.</summary>
    public bool MultiConn { get; init; }

    /// <summary>Require TLS of every client: NBD_OPT_STARTTLS before any other option. Null serves in plain text.</summary>
    public NbdServerTls? Tls { get; init; }

    internal bool IsReadOnly => ReadOnly || !Device.CanWrite;

    /// <summary>The device's logical block size: requests not aligned to it are refused.</summary>
    internal int MinimumBlockSize => Device.LogicalBlockSize;

    /// <summary>At most the server's per-connection buffer budget, and a multiple of the minimum block size.</summary>
    internal int MaximumBlockSize(long bufferBytesPerConnection)
    {
        long max = Math.Min(MaxRequestBytes, bufferBytesPerConnection);
        return (int)(max - max % MinimumBlockSize);
    }

    internal int EffectivePreferredBlockSize(int maximumBlockSize)
    {
        // The protocol wants a power of two, at least 512 and the minimum; a preference above the maximum is noise.
        int preferred = RoundDownToPowerOf2(Math.Max(PreferredBlockSize, 1));
        preferred = Math.Max(preferred, Math.Max(512, MinimumBlockSize));
        int maxPowerOfTwo = RoundDownToPowerOf2(maximumBlockSize);
        return Math.Max(Math.Min(preferred, maxPowerOfTwo), MinimumBlockSize);
    }

    private static int RoundDownToPowerOf2(int value) => 1 << BitOperations.Log2((uint)value);

    /// <summary>True when a client's requested name means this export.</summary>
    internal bool Answers(string name) => name.Length == 0 || string.Equals(name, Name, StringComparison.Ordinal);

    internal void Validate(long bufferBytesPerConnection)
    {
        int min = MinimumBlockSize;
        if (min < 1 || min > 64 * 1024 || !BitOperations.IsPow2(min))
            throw new ArgumentOutOfRangeException(nameof(Device), min, "NBD needs a logical block size that is a power of two up to 64 KiB.");
        if (Encoding.UTF8.GetByteCount(Name) > NbdProtocol.MaxNameLength || Name.Contains('\0'))
            throw new ArgumentException($"An export name is at most {NbdProtocol.MaxNameLength} bytes of UTF-8 without NUL.", nameof(Name));
        if (Encoding.UTF8.GetByteCount(Description) > NbdProtocol.MaxNameLength || Description.Contains('\0'))
            throw new ArgumentException($"A description is at most {NbdProtocol.MaxNameLength} bytes of UTF-8 without NUL.", nameof(Description));
        if (MaximumBlockSize(bufferBytesPerConnection) < min)
            throw new ArgumentOutOfRangeException(nameof(MaxRequestBytes), MaxRequestBytes,
                $"The largest request must hold at least one block ({min} bytes), within the per-connection buffer budget.");
    }
}
