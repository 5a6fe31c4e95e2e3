using System.Diagnostics;
using Kcopyd.Engine;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Trust;
using Kcopyd.Host.Registry;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Operations;

/// <summary>
/// Compare-Region and Get-RegionHash, run in the host. Both only read: devices are opened read-only and never
/// exclusively (a mounted device, a leg of a live mirror, an image another process writes can all be read), each
/// call has its own pages and I/O queue, and Ctrl+C cancels it.
/// </summary>
internal sealed class TrustOperations(HostRegistry registry)
{
    /// <summary>
    /// The most ranges one call returns; the cmdlet asks again from where it stopped, so neither process holds more
    /// than this however many ranges differ.
    /// </summary>
    internal const int MaxRangesPerCall = 4096;

    private static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(250);

    public CompareResult Compare(OperationContext context, CompareRequest r)
    {
        if (r.Paths.Length < 2 || r.Paths.Length > RegionComparer.MaxInputs)
            throw new KcopydException("InputCount", KcopydErrorKind.InvalidArgument, $"Compare-Region compares 2 to {RegionComparer.MaxInputs} inputs, not {r.Paths.Length}.");
        if (r.Offsets.Length != 1 && r.Offsets.Length != r.Paths.Length)
            throw new KcopydException("OffsetCount", KcopydErrorKind.InvalidArgument,
                $"Give one Offset for all inputs or one for each of the {r.Paths.Length} inputs, not {r.Offsets.Length}.");
        if (r.Offsets.Any(o => o < 0))
            throw new KcopydException("RegionOutOfRange", KcopydErrorKind.InvalidArgument, "An offset cannot be negative.");

        var devices = new DeviceScope(registry.Mirrors, registry.Jobs);
        try
        {
            var inputs = r.Paths.Select((p, i) => new RegionInput(devices.Open(p, DeviceOpenOptions.ReadOnly), r.Offsets.Length == 1 ? r.Offsets[0] : r.Offsets[i])).ToArray();
            long length = r.Length ?? DefaultLength(context, inputs);
            string[] names = r.Paths.Select(NameOf).ToArray();
            var found = new List<RegionDifferenceInfo>();
            var progress = new Progress(context, $"Comparing {string.Join(", ", names)}", r.DoneBefore, r.TotalLength > 0 ? r.TotalLength : length);
            long compared = RegionComparer.Compare(inputs, length, d =>
            {
                found.Add(new RegionDifferenceInfo
                {
                    Offset = inputs[0].OffsetBytes + d.OffsetBytes,
                    Length = d.LengthBytes,
                    Inputs = d.Inputs().Select(i => names[i]).ToArray(),
                    RegionOffset = r.DoneBefore + d.OffsetBytes,
                });
                return !r.FirstOnly && found.Count < MaxRangesPerCall;
            }, context.Cancellation, progress.Report, r.FirstOnly);
            bool complete = compared == length || r.FirstOnly;
            if (complete) progress.End();
            return new CompareResult { Differences = [.. found], ComparedBytes = compared, Length = length, Complete = complete };
        }
        finally
        {
            devices.CloseAll();
        }
    }

    public RegionHashInfo Hash(OperationContext context, HashRequest r)
    {
        if (r.Offset < 0) throw new KcopydException("RegionOutOfRange", KcopydErrorKind.InvalidArgument, "The offset cannot be negative.");
        var devices = new DeviceScope(registry.Mirrors, registry.Jobs);
        try
        {
            var device = devices.Open(r.Path, DeviceOpenOptions.ReadOnly);
            long length = r.Length ?? device.SizeBytes - r.Offset;
            string name = NameOf(r.Path);
            var progress = new Progress(context, $"Hashing {name}", 0, length);
            byte[] hash = RegionHasher.Hash(new RegionInput(device, r.Offset), length, r.BlockSize, r.Algorithm, context.Cancellation, progress.Report);
            progress.End();
            return new RegionHashInfo
            {
                Algorithm = r.Algorithm.ToString(), Hash = Convert.ToHexString(hash), Path = name,
                Offset = r.Offset, Length = length, BlockSize = r.BlockSize,
            };
        }
        finally
        {
            devices.CloseAll();
        }
    }

    /// <summary>As far as every input reaches; inputs of other sizes are compared over the common part, and the admin is told.</summary>
    private static long DefaultLength(OperationContext context, RegionInput[] inputs)
    {
        long[] rest = inputs.Select(i => i.Device.SizeBytes - i.OffsetBytes).ToArray();
        long length = rest.Min();
        if (length <= 0)
            throw new KcopydException("RegionOutOfRange", KcopydErrorKind.InvalidArgument,
                $"An offset is at or past the end of its input: nothing is left to compare ({string.Join(", ", inputs.Select(i => $"'{i.Device.Name}' is {i.Device.SizeBytes} bytes"))}).");
        if (rest.Any(r => r != length))
            context.WriteWarning($"The inputs reach different lengths after their offsets ({string.Join(", ", rest.Select((r, i) => $"{inputs[i].Device.Name}: {r}"))}); only the first {length} bytes were compared.");
        return length;
    }

    /// <summary>An input as the admin named it: the path as typed, or the mirror's name.</summary>
    private static string NameOf(DeviceRef device) => device.Mirror ?? device.Text ?? device.Path ?? "";

    /// <summary>Progress of a long read, sent to the cmdlet at most four times a second (each is a round trip).</summary>
    private sealed class Progress(OperationContext context, string activity, long before, long total)
    {
        private readonly ProgressInfo _info = new() { Activity = activity };
        private long _lastSent = Stopwatch.GetTimestamp();

        public void Report(long done)
        {
            if (Stopwatch.GetElapsedTime(_lastSent) < ProgressInterval) return;
            _lastSent = Stopwatch.GetTimestamp();
            long all = before + done;
            _info.PercentComplete = total > 0 ? (int)Math.Min(100, 100 * all / total) : -1;
            _info.Status = $"{all / (1 << 20)} of {total / (1 << 20)} MiB";
            context.WriteProgress(_info);
        }

        public void End()
        {
            _info.Completed = true;
            context.WriteProgress(_info);
        }
    }
}
