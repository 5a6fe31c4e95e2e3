using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Copy;

/// <summary>One destination of a copy: a device and the byte offset the region lands at.</summary>
public sealed record CopyDestination(IBlockDevice Device, long OffsetBytes);

/// <summary>
/// A region copy: <see cref="LengthBytes"/> bytes from <see cref="Source"/> at <see cref="SourceOffsetBytes"/> to each
/// destination, read once. With no source the destinations' regions are zeroed.
/// </summary>
public sealed record CopyRequest
{
    public const int MaxDestinations = 8;

    public IBlockDevice? Source { get; init; }

    public long SourceOffsetBytes { get; init; }

    public required IReadOnlyList<CopyDestination> Destinations { get; init; }

    public required long LengthBytes { get; init; }

    /// <summary>Go on past failed chunks; the job still reports the read error and the failed destinations.</summary>
    public bool IgnoreErrors { get; init; }

    /// <summary>
    /// 0 for unlimited: this job's own bandwidth, on top of its client's throttle. A job held by it waits without
    /// pages and without holding back the client's other jobs.
    /// </summary>
    public long MaxBytesPerSecond { get; init; }

    /// <summary>
    /// Re-read every chunk from each destination after writing it, with the destination's own O_DIRECT fd, and
    /// compare its hash with the source's; differing ranges end up in <see cref="CopyJob.Mismatches"/> and fail the job.
    /// </summary>
    public bool Verify { get; init; }

    /// <summary>
    /// All-zero chunks and holes of the source become zeroing on the destinations (<see cref="Io.BlockOperation.PunchZeroes"/>)
    /// instead of written zeros, as <c>qemu-img convert -S</c> and nbdcopy do.
    /// </summary>
    public bool Sparse { get; init; }

    /// <summary>The destinations read as zeros already: all-zero chunks and holes of the source are not written at all.</summary>
    public bool DestinationIsZero { get; init; }

    /// <summary>
    /// A copy map (ddrescue's mapfile; see <see cref="CopyMap"/>): chunks it holds from an earlier run of this same
    /// copy are skipped, finished ones are recorded once flushed. Created 0600 when missing; one of another copy is refused.
    /// </summary>
    public string? MapPath { get; init; }

    /// <summary>Zero chunks and holes of the source are looked for (and then zeroed or skipped).</summary>
    internal bool DetectsZeroes => Sparse || DestinationIsZero;

    /// <summary>
    /// A job the engine runs for itself (a mirror's recovery copy): its id counts down from -1, so internal jobs
    /// never take the ids an admin's jobs are numbered by, and an id tells at once which kind a job is.
    /// </summary>
    public bool Internal { get; init; }

    /// <summary>Called once when the job ends, on the client's worker thread: keep it short and never block in it.</summary>
    public Action<CopyJob>? Completed { get; init; }

    /// <summary>Offsets and the length are multiples of this: the largest logical block size of the source and destinations.</summary>
    public int AlignmentBytes => Destinations.Select(d => d.Device.LogicalBlockSize).Append(Source?.LogicalBlockSize ?? 1).Max();

    /// <summary>Checks the request against the devices' sizes and block sizes before anything is read or written.</summary>
    public void Validate()
    {
        if (Destinations.Count is < 1 or > MaxDestinations)
            throw Invalid("TooManyDestinations", $"A copy has 1 to {MaxDestinations} destinations, not {Destinations.Count}.", Destinations.Count);
        if (LengthBytes <= 0)
            throw Invalid("EmptyRegion", $"The length must be positive, not {LengthBytes}.", LengthBytes);
        if (MaxBytesPerSecond < 0)
            throw Invalid("InvalidRate", $"The rate must be 0 (unlimited) or positive, not {MaxBytesPerSecond}.", MaxBytesPerSecond);

        if (Source == null && (Verify || DetectsZeroes))
            throw Invalid("NotACopy", "Verify, Sparse and DestinationIsZero need a source: zeroing a region has none.", Destinations);
        if (Source == null && MapPath != null)
            throw Invalid("NotACopy", "A copy map needs a source: zeroing a region has none (run Clear-Region again instead).", MapPath);
        if (MapPath != null && (MapPath.Length == 0 || MapPath.Contains('\0')))
            throw Invalid("InvalidMapPath", "The copy map's path is empty or holds a NUL character.", MapPath);

        int blockSize = AlignmentBytes;
        CheckRegion(Source, SourceOffsetBytes, blockSize);
        foreach (var d in Destinations)
        {
            CheckRegion(d.Device, d.OffsetBytes, blockSize);
            if (!d.Device.CanWrite)
                throw new KcopydException("DeviceReadOnly", KcopydErrorKind.InvalidArgument, $"'{d.Device.Name}' is open read-only.", d.Device.Name);
        }

        for (int i = 0; i < Destinations.Count; i++)
        {
            var d = Destinations[i];
            if (Source != null && Overlaps(Source, SourceOffsetBytes, d.Device, d.OffsetBytes))
                throw Invalid("OverlappingRegion", $"Destination '{d.Device.Name}' at {d.OffsetBytes} overlaps the source region.", d.Device.Name);
            for (int j = 0; j < i; j++)
                if (Overlaps(Destinations[j].Device, Destinations[j].OffsetBytes, d.Device, d.OffsetBytes))
                    throw Invalid("OverlappingRegion", $"Destinations '{Destinations[j].Device.Name}' and '{d.Device.Name}' overlap.", d.Device.Name);
        }
    }

    private void CheckRegion(IBlockDevice? device, long offset, int blockSize)
    {
        if (device == null) return;
        if (offset < 0)
            throw new KcopydException("RegionOutOfRange", KcopydErrorKind.InvalidArgument,
                $"The offset {offset} on '{device.Name}' is negative: a region starts at byte 0 or after it.", device.Name);
        if (offset % blockSize != 0 || LengthBytes % blockSize != 0)
            throw Invalid("UnalignedRegion",
                $"Offset {offset} and length {LengthBytes} on '{device.Name}' must be multiples of the logical block size {blockSize}.", device.Name);
        if (offset > device.SizeBytes - LengthBytes)
            throw new KcopydException("RegionOutOfRange", KcopydErrorKind.InvalidArgument,
                $"The region {offset}+{LengthBytes} ends past the end of '{device.Name}' ({device.SizeBytes} bytes).", device.Name);
    }

    // By storage, not by name: a loop device and its image file, or a partition and its disk, are one set of bytes.
    private bool Overlaps(IBlockDevice a, long offsetA, IBlockDevice b, long offsetB)
        => StorageExtent.Overlap(a, offsetA, b, offsetB, LengthBytes);

    private static KcopydException Invalid(string errorId, string message, object? target)
        => new(errorId, KcopydErrorKind.InvalidArgument, message, target);
}
