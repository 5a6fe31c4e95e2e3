using System.Buffers.Binary;
using System.Text;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Native;
using Microsoft.Win32.SafeHandles;
using Tmds.Linux;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// A dirty log in a file (dm-log's "disk"): a versioned header naming the mirror it belongs to (region size,
/// region count, each leg's name and size), then one bit per region, set when the region is in sync and clean.
/// A mark is written and fdatasync'ed before the write it covers is issued; clears reach the file lazily.
/// </summary>
public sealed class DiskDirtyLog : IDirtyLog
{
    public const int Version = 1;
    private const int HeaderAlignment = 512;
    private const int MaxHeaderBytes = 64 * 1024;
    private static readonly byte[] Magic = "KCPYDLOG"u8.ToArray();

    private readonly RegionBitmaps _bits;
    private readonly object _flushLock = new();
    private readonly SafeFileHandle _file;
    private readonly long _bitmapOffset;

    private DiskDirtyLog(string path, SafeFileHandle file, long bitmapOffset, long regionSizeBytes, RegionBitmaps bits)
    {
        Path = path;
        _file = file;
        _bitmapOffset = bitmapOffset;
        RegionSizeBytes = regionSizeBytes;
        RegionCount = bits.RegionCount;
        _bits = bits;
    }

    public string Kind => "disk";

    public string Path { get; }

    public long RegionSizeBytes { get; }

    public long RegionCount { get; }

    public long SyncCount { get { lock (_bits.Lock) return _bits.SyncCount; } }

    /// <summary>True when the file was absent or empty and this log started it.</summary>
    public bool IsNew { get; private init; }

    /// <summary>
    /// Opens the log of the mirror described by the arguments. A file that is absent or empty starts a new log
    /// (all out of sync, or all in sync with <paramref name="noSync"/>); an existing one must have been written for
    /// exactly this mirror, else LogMismatch and the file is left as it was.
    /// </summary>
    public static DiskDirtyLog Open(string path, long regionSizeBytes, long regionCount, IReadOnlyList<IBlockDevice> legs, bool noSync)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(legs);
        byte[] header = BuildHeader(regionSizeBytes, regionCount, legs);
        SafeFileHandle file;
        try
        {
            // FileShare.None takes an advisory lock: two live mirrors never share one log.
            file = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new KcopydException("LogOpenFailed", KcopydErrorKind.DeviceError, $"Cannot open the mirror log '{path}': {ex.Message}", path, ex);
        }

        try
        {
            var bits = new RegionBitmaps(regionCount, allInSync: noSync);
            long length = RandomAccess.GetLength(file);
            bool isNew = length == 0;
            if (isNew)
            {
                RandomAccess.Write(file, header, 0);
                bits.CleanChanged = true;
            }
            else
            {
                CheckHeader(path, file, length, header);
                var clean = new byte[RegionBitmaps.ByteCount(regionCount)];
                if (length < header.Length + clean.Length)
                    throw Mismatch(path, "its bitmap is cut short");
                RandomAccess.Read(file, clean, header.Length);
                bits.LoadClean(clean);
            }
            var log = new DiskDirtyLog(path, file, header.Length, regionSizeBytes, bits) { IsNew = isNew };
            if (isNew) log.Flush();
            return log;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public bool InSync(long region) { lock (_bits.Lock) return _bits.InSync(region); }

    public void MarkRegion(long region) { lock (_bits.Lock) _bits.MarkRegion(region); }

    public void ClearRegion(long region) { lock (_bits.Lock) _bits.ClearRegion(region); }

    public void SetRegionSync(long region, bool inSync) { lock (_bits.Lock) _bits.SetRegionSync(region, inSync); }

    public bool TryGetResyncWork(out long region) { lock (_bits.Lock) return _bits.TryGetResyncWork(out region); }

    /// <summary>Writes the bitmap and fdatasyncs it, if anything changed since the last flush.</summary>
    public void Flush()
    {
        lock (_flushLock)
        {
            byte[] snapshot;
            lock (_bits.Lock)
            {
                if (!_bits.CleanChanged) return;
                snapshot = (byte[])_bits.Clean.Clone();
                _bits.CleanChanged = false;
            }
            try
            {
                RandomAccess.Write(_file, snapshot, _bitmapOffset);
                if (LibC.fdatasync((int)_file.DangerousGetHandle()) != 0)
                    throw new IOException($"fdatasync of '{Path}' failed: {Errno.Describe(Errno.Last)}.");
            }
            catch
            {
                lock (_bits.Lock) _bits.CleanChanged = true;
                throw;
            }
        }
    }

    public void Dispose() => _file.Dispose();

    /// <summary>Reads just the count of regions a log file marks in sync (for status and tests), without opening it as a log.</summary>
    public static long CountInSync(string path, long regionCount)
    {
        byte[] file = File.ReadAllBytes(path);
        int bitmapOffset = (int)BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(12));
        long count = 0;
        for (long r = 0; r < regionCount; r++)
            if ((file[bitmapOffset + (r >> 3)] & (1 << (int)(r & 7))) != 0) count++;
        return count;
    }

    /// <summary>magic, version, bitmap offset, region size, region count, leg count, then each leg's name and size.</summary>
    private static byte[] BuildHeader(long regionSizeBytes, long regionCount, IReadOnlyList<IBlockDevice> legs)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(Magic);
            writer.Write(Version);
            writer.Write(0u); // bitmap offset, filled in below
            writer.Write(regionSizeBytes);
            writer.Write(regionCount);
            writer.Write(legs.Count);
            foreach (var leg in legs)
            {
                byte[] name = Encoding.UTF8.GetBytes(leg.Name);
                writer.Write(name.Length);
                writer.Write(name);
                writer.Write(leg.SizeBytes);
            }
        }
        long length = (stream.Length + HeaderAlignment - 1) / HeaderAlignment * HeaderAlignment;
        if (length > MaxHeaderBytes) throw new ArgumentException("The legs' names do not fit a log header.", nameof(legs));
        stream.SetLength(length);
        byte[] header = stream.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), (uint)length);
        return header;
    }

    private static void CheckHeader(string path, SafeFileHandle file, long length, byte[] expected)
    {
        var found = new byte[Math.Min(length, MaxHeaderBytes)];
        RandomAccess.Read(file, found, 0);
        if (found.Length < 16 || !found.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            throw Mismatch(path, "it is not a Kcopyd mirror log");
        int version = BinaryPrimitives.ReadInt32LittleEndian(found.AsSpan(8));
        if (version != Version) throw Mismatch(path, $"it has version {version}, not {Version}");
        if (found.Length < expected.Length || !found.AsSpan(0, expected.Length).SequenceEqual(expected))
            throw Mismatch(path, $"it was written for another mirror ({Describe(found)})");
    }

    private static string Describe(byte[] header)
    {
        try
        {
            using var reader = new BinaryReader(new MemoryStream(header), Encoding.UTF8);
            reader.ReadBytes(16);
            long regionSize = reader.ReadInt64();
            long regionCount = reader.ReadInt64();
            int legCount = reader.ReadInt32();
            var legs = new List<string>();
            for (int i = 0; i < legCount && i < 16; i++)
            {
                string name = Encoding.UTF8.GetString(reader.ReadBytes(reader.ReadInt32()));
                legs.Add($"{name} {reader.ReadInt64()} bytes");
            }
            return $"region size {regionSize}, {regionCount} regions, legs {string.Join(", ", legs)}";
        }
        catch (Exception ex) when (ex is EndOfStreamException or ArgumentException)
        {
            return "an unreadable header";
        }
    }

    private static KcopydException Mismatch(string path, string why)
        => new("LogMismatch", KcopydErrorKind.InvalidArgument, $"The mirror log '{path}' cannot be used: {why}.", path);
}
