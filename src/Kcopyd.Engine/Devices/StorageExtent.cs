namespace Kcopyd.Engine.Devices;

/// <summary>
/// Where a device's bytes really live: byte 0 of the device is byte <see cref="OffsetBytes"/> of the storage
/// <see cref="Base"/>. A partition is its whole disk at the partition's start; a loop device is its backing file
/// at the loop's offset. Two devices with one Base are two names for the same bytes.
/// </summary>
public readonly record struct StorageExtent(DeviceIdentity Base, long OffsetBytes)
{
    /// <summary>
    /// True when <paramref name="lengthBytes"/> bytes at <paramref name="offsetA"/> on <paramref name="a"/> and at
    /// <paramref name="offsetB"/> on <paramref name="b"/> share at least one byte of storage.
    /// </summary>
    public static bool Overlap(IBlockDevice a, long offsetA, IBlockDevice b, long offsetB, long lengthBytes)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (lengthBytes <= 0) return false;
        var storageA = a.Storage;
        var storageB = b.Storage;
        // One object is one storage even if it reports a storage that differs between calls (a test double, say).
        if (ReferenceEquals(a, b)) storageB = storageA;
        else if (storageA.Base != storageB.Base) return false;
        long startA = storageA.OffsetBytes + offsetA;
        long startB = storageB.OffsetBytes + offsetB;
        return startA < startB + lengthBytes && startB < startA + lengthBytes;
    }

    /// <summary>True when the two devices, whole, share any byte of storage (a partition and its disk, say).</summary>
    public static bool Overlap(IBlockDevice a, IBlockDevice b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (ReferenceEquals(a, b)) return true;
        var storageA = a.Storage;
        var storageB = b.Storage;
        if (storageA.Base != storageB.Base) return false;
        return storageA.OffsetBytes < storageB.OffsetBytes + b.SizeBytes && storageB.OffsetBytes < storageA.OffsetBytes + a.SizeBytes;
    }
}
