using System.Buffers.Binary;
using System.Diagnostics;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// A loop device a test attaches with options of its own (an offset, partitions); disposing detaches it, which
/// also removes its partitions. Hand it to <see cref="Scratch.Track{T}"/> before opening devices on it.
/// </summary>
public sealed class AttachedLoop : IDisposable
{
    private AttachedLoop(string device) => Device = device;

    /// <summary>The /dev/loopN.</summary>
    public string Device { get; }

    /// <summary>The first partition, /dev/loopNp1, once <see cref="WithPartitions"/> made it.</summary>
    public string FirstPartition => Device + "p1";

    public static AttachedLoop Over(string file, string options = "") => new(Scratch.Attach(file, options));

    /// <summary>
    /// Attaches with partition scanning and waits for the first partition's node. A kernel built without partition
    /// table parsers finds none itself; partx then reads the table in user space and adds it (BLKPG), as for any disk.
    /// </summary>
    public static AttachedLoop WithPartitions(string file)
    {
        var loop = new AttachedLoop(Scratch.Attach(file, "--partscan"));
        try
        {
            if (!WaitFor(loop.FirstPartition, TimeSpan.FromSeconds(2)))
            {
                Scratch.Run("partx", $"--add {loop.Device}");
                if (!WaitFor(loop.FirstPartition, TimeSpan.FromSeconds(10)))
                    throw new InvalidOperationException($"{loop.FirstPartition} did not appear");
            }
            return loop;
        }
        catch
        {
            loop.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes an MBR with one Linux partition (type 0x83) at <paramref name="startSector"/>, in 512-byte sectors.
    /// Written by hand: sfdisk is not everywhere, and the format is 16 bytes and a signature.
    /// </summary>
    public static void WriteMbr(string file, uint startSector, uint sectorCount)
    {
        var sector = new byte[512];
        var entry = sector.AsSpan(446, 16);
        entry[4] = 0x83;
        BinaryPrimitives.WriteUInt32LittleEndian(entry[8..], startSector);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[12..], sectorCount);
        sector[510] = 0x55;
        sector[511] = 0xAA;
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        stream.Write(sector);
        stream.Flush(true);
    }

    private static bool WaitFor(string path, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!File.Exists(path))
        {
            if (clock.Elapsed > timeout) return false;
            Thread.Sleep(20);
        }
        return true;
    }

    public void Dispose()
    {
        try { Scratch.Run("losetup", $"-d {Device}"); } catch (InvalidOperationException) { /* already gone */ }
    }
}
