using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;
using Kcopyd.Engine.Nbd;

namespace Kcopyd.Host.Operations;

/// <summary>
/// What the engine decided for a job, in the words -Verbose shows: how it is split and driven, on which I/O
/// backend, aligned to what, and how each device is reached (direct I/O, the zeroing fast path it tries).
/// </summary>
internal static class JobDecisions
{
    public static IEnumerable<string> Describe(CopyJob job)
    {
        var client = job.Owner;
        var options = client.Options;
        string pieces = job.IsZero ? "zero chunks" : "sub-jobs";
        yield return $"Copy job {job.Id} on client '{client.Name}': {pieces} of {Size(job.SubJobSizeBytes)}, {options.SubJobsInFlight} in flight, " +
            $"I/O backend {client.IoBackend} (depth {options.IoDepth}), {options.PageCount} pages of {Size(options.PageSizeBytes)}.";
        yield return $"Copy job {job.Id} throttle: client '{client.Name}' {Throttle(client.Throttle)}; the job's own limit {(job.MaxBytesPerSecond > 0 ? Size(job.MaxBytesPerSecond) + "/s" : "none")}.";
        yield return $"Copy job {job.Id} alignment: offsets and length are multiples of {job.Request.AlignmentBytes} bytes (the largest logical block size of its devices).";
        if (job.Request.Source is { } source) yield return $"Copy job {job.Id} source {Device(source, zeroing: false)}";
        foreach (var destination in job.Request.Destinations)
            yield return $"Copy job {job.Id} destination {Device(destination.Device, job.IsZero)}";
    }

    private static string Device(IBlockDevice device, bool zeroing)
    {
        string how = device switch
        {
            LinuxBlockDevice linux => $"{(linux.IsBlockDevice ? "block device" : "image file")}, {(linux.IsDirect ? "direct I/O (O_DIRECT)" : "buffered I/O (O_DIRECT refused)")}",
            NbdDevice nbd => $"NBD export, {(nbd.CanWriteZeroes ? "takes NBD_CMD_WRITE_ZEROES" : "no NBD_CMD_WRITE_ZEROES")}",
            MirrorDevice mirror => $"mirror of {mirror.Legs.Count} legs ({string.Join(", ", mirror.Legs.Select(l => l.Device.Name))})",
            _ => device.GetType().Name,
        };
        string text = $"'{device.Name}': {how}, {device.LogicalBlockSize}-byte logical blocks";
        return zeroing ? $"{text}; zeroes by {ZeroPath(device)}." : text + ".";
    }

    /// <summary>The fast path a zeroing tries first; where the device refuses it, zeros are written instead.</summary>
    private static string ZeroPath(IBlockDevice device) => device switch
    {
        LinuxBlockDevice { IsBlockDevice: true } => "BLKZEROOUT (written zeros where the device refuses it)",
        LinuxBlockDevice => "fallocate ZERO_RANGE (written zeros where the filesystem refuses it)",
        NbdDevice { CanWriteZeroes: true } => "NBD write-zeroes",
        NbdDevice => "written zeros (the server takes no write-zeroes)",
        MirrorDevice mirror => "each leg's own path: " + string.Join(", ", mirror.Legs.Select(l => $"{l.Device.Name} {ZeroPath(l.Device)}")),
        _ => "written zeros",
    };

    private static string Throttle(CopyThrottle throttle)
    {
        if (!throttle.IsLimited) return "unthrottled";
        var limits = new List<string>();
        if (throttle.BytesPerSecond > 0) limits.Add($"{Size(throttle.BytesPerSecond)}/s");
        if (throttle.DutyCyclePercent < 100) limits.Add($"duty cycle {throttle.DutyCyclePercent}%");
        return string.Join(", ", limits);
    }

    private static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 when bytes % (1L << 30) == 0 => $"{bytes >> 30} GiB",
        >= 1L << 20 when bytes % (1L << 20) == 0 => $"{bytes >> 20} MiB",
        >= 1L << 10 when bytes % (1L << 10) == 0 => $"{bytes >> 10} KiB",
        _ => $"{bytes} bytes",
    };
}
