using Kcopyd.Engine;
using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Host.Registry;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Operations;

/// <summary>
/// Start-RegionCopy, Clear-Region and the copy-job cmdlets, run in the host: one instance per connection, which
/// keeps the jobs that connection follows listed until it has seen them end (or it is gone).
/// </summary>
internal sealed class CopyOperations(HostRegistry registry) : IDisposable
{
    private readonly HashSet<long> _followed = [];

    /// <summary>Longest a WaitJob call waits before answering with the job as it is (the cmdlet then asks again).</summary>
    private static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a start waits for its job before answering: a small job has ended by then, so the cmdlet has it
    /// without a WaitJob round trip, and one that fails at its first I/O is reported as failed by the cmdlet that
    /// started it, also without -Wait; a longer job answers that much later.
    /// </summary>
    private static readonly TimeSpan FirstWait = TimeSpan.FromMilliseconds(50);

    /// <summary>The started job, or null when ShouldProcess said no. Bad input fails first, under -WhatIf too.</summary>
    public CopyJobInfo? StartCopy(OperationContext context, CopyJobRequest r)
        => Start(context, r.Client, r.Follow, r.Verbose, (client, devices) =>
        {
            // Before any device is opened: these need no device to be told.
            if (r.Destinations.Length > CopyRequest.MaxDestinations)
                throw new KcopydException("TooManyDestinations", KcopydErrorKind.InvalidArgument,
                    $"A copy has at most {CopyRequest.MaxDestinations} destinations, not {r.Destinations.Length}: start another copy for the rest.", r.Destinations.Length);
            if (r.DestinationOffsets.Length != 1 && r.DestinationOffsets.Length != r.Destinations.Length)
                throw new KcopydException("DestinationOffsetCount", KcopydErrorKind.InvalidArgument,
                    $"Give one DestinationOffset for all destinations or one for each of the {r.Destinations.Length} destinations, not {r.DestinationOffsets.Length}.",
                    r.DestinationOffsets.Length);
            if (r.SourceOffset < 0 || r.DestinationOffsets.Any(o => o < 0))
                throw r.SourceOffset < 0 ? NegativeOffset("SourceOffset", r.SourceOffset) : NegativeOffset("DestinationOffset", r.DestinationOffsets.First(o => o < 0));
            var source = devices.Open(r.Source, DeviceOpenOptions.ReadOnly);
            var destinations = r.Destinations
                .Select((d, i) => new CopyDestination(devices.OpenForWrite(d, r.Force), r.DestinationOffsets.Length == 1 ? r.DestinationOffsets[0] : r.DestinationOffsets[i]))
                .ToArray();
            var request = new CopyRequest
            {
                Source = source,
                SourceOffsetBytes = r.SourceOffset,
                Destinations = destinations,
                LengthBytes = r.Length ?? source.SizeBytes - r.SourceOffset,
                IgnoreErrors = r.IgnoreErrors,
                MaxBytesPerSecond = r.MaxBytesPerSecond,
                Verify = r.Verify,
                Sparse = r.Sparse,
                DestinationIsZero = r.DestinationIsZero,
                MapPath = r.MapPath,
                Completed = _ => devices.CloseAll(),
            };
            request.Validate();
            string target = string.Join(", ", destinations.Select(d => $"{d.Device.Name} bytes {Span(d.OffsetBytes, request.LengthBytes)}"));
            return r.Confirmed || context.ShouldProcess(target, $"Overwrite with {request.LengthBytes} bytes copied from {source.Name} bytes {Span(r.SourceOffset, request.LengthBytes)}")
                ? client.Copy(request)
                : null;
        });

    public CopyJobInfo? StartZero(OperationContext context, ZeroJobRequest r)
        => Start(context, r.Client, r.Follow, r.Verbose, (client, devices) =>
        {
            if (r.Offset < 0) throw NegativeOffset("Offset", r.Offset);
            CopyDestination[] destination = [new(devices.OpenForWrite(r.Path, r.Force), r.Offset)];
            var request = new CopyRequest { Destinations = destination, LengthBytes = r.Length, MaxBytesPerSecond = r.MaxBytesPerSecond, Completed = _ => devices.CloseAll() };
            request.Validate(); // bad input fails before the prompt, and under -WhatIf too
            return r.Confirmed || context.ShouldProcess($"{destination[0].Device.Name} bytes {Span(r.Offset, r.Length)}", $"Zero {r.Length} bytes")
                ? client.Copy(request)
                : null;
        });

    public CopyJobInfo[] GetJobs(long[]? ids)
    {
        if (ids == null) return registry.Jobs.List().ToArray();
        return ids.Select(id => registry.JobsOf(id).Find(id) ?? throw NotFound(id)).ToArray();
    }

    public CopyJobInfo[] GetInternalJobs() => registry.InternalJobs.List().ToArray();

    /// <summary>
    /// Answers when the job ends, or after the timeout (at most 10 s) with the job as it is then; a job this
    /// connection is waiting for stays listed until a WaitJob has answered it ended.
    /// </summary>
    public async Task<CopyJobInfo> WaitJob(long id, int timeoutMilliseconds, CancellationToken cancellation)
    {
        if (registry.JobsOf(id).FindLive(id) is not { } job)
        {
            var ended = registry.JobsOf(id).Find(id) ?? throw NotFound(id);
            Unfollow(id);
            return ended;
        }
        Follow(id);
        var timeout = TimeSpan.FromMilliseconds(Math.Clamp(timeoutMilliseconds, 0, (int)MaxWait.TotalMilliseconds));
        try { await job.WaitAsync(cancellation).WaitAsync(timeout, cancellation); }
        catch (TimeoutException) { }
        catch (OperationCanceledException)
        {
            Unfollow(id); // Ctrl+C: the cmdlet stopped following it
            throw;
        }
        return Answer(job);
    }

    /// <summary>Asks the job to stop; it ends as Stopped once its chunks in flight return (WaitJob sees it).</summary>
    public CopyJobInfo StopJob(OperationContext context, long id)
    {
        var info = registry.JobsOf(id).Find(id) ?? throw NotFound(id);
        if (info.Internal)
            throw new KcopydException("CopyJobInternal", KcopydErrorKind.InvalidOperation,
                $"Copy job {id} is a recovery copy the host runs for itself (client {info.Client}) and cannot be stopped by id; " +
                "Set-MirrorDevice -RecoveryBytesPerSecond slows a mirror's recovery.", id);
        if (registry.Jobs.FindLive(id) is not { } job) return info;
        if (!context.ShouldProcess($"copy job {id}", "Stop")) return info;
        job.Stop();
        job.Wait(TimeSpan.FromSeconds(2));
        return registry.Jobs.Find(id) ?? info;
    }

    /// <summary>Drops a finished job from the list; a running one is refused (stop it first).</summary>
    public bool RemoveJob(OperationContext context, long id)
    {
        if (registry.JobsOf(id).Find(id) is not { } info) throw NotFound(id);
        if (!info.IsFinished)
            throw new KcopydException("CopyJobRunning", KcopydErrorKind.InvalidOperation,
                $"Copy job {id} is {info.State}: stop it first (Stop-CopyJob -Id {id}), then remove it.", id);
        if (!context.ShouldProcess($"copy job {id} ({info.State})", "Remove from the job list")) return false;
        registry.JobsOf(id).Remove(id);
        return true;
    }

    /// <summary>The job as the cmdlet is told it; one it sees ended it follows no more (it asks no more WaitJob).</summary>
    private CopyJobInfo Answer(CopyJob job)
    {
        var info = CopyJobInfo.Of(job);
        if (info.IsFinished)
        {
            registry.JobsOf(job.Id).SealIfEnded(job.Id);
            Unfollow(job.Id);
        }
        return info;
    }

    /// <summary>The connection is gone: what it followed is left to the history's bounds.</summary>
    public void Dispose()
    {
        lock (_followed)
        {
            foreach (long id in _followed) registry.JobsOf(id).Unpin(id);
            _followed.Clear();
        }
    }

    private void Follow(long id)
    {
        lock (_followed)
            if (_followed.Add(id)) registry.JobsOf(id).Pin(id);
    }

    private void Unfollow(long id)
    {
        lock (_followed)
            if (_followed.Remove(id)) registry.JobsOf(id).Unpin(id);
    }

    private CopyJobInfo? Start(OperationContext context, string clientName, bool follow, bool verbose, Func<CopyClient, DeviceScope, CopyJob?> start)
    {
        var devices = new DeviceScope(registry.Mirrors, registry.Jobs);
        try
        {
            var job = start(registry.Clients.Get(clientName), devices);
            if (job == null)
            {
                devices.CloseAll();
                return null;
            }
            // Pinned before it can end and leave a history of one: the -Wait that follows must find it.
            if (follow) lock (_followed) _followed.Add(job.Id);
            registry.Jobs.Add(job, pin: follow);
            if (verbose)
                foreach (string line in JobDecisions.Describe(job)) context.WriteVerbose(line);
            try { job.WaitAsync(context.Cancellation).Wait(FirstWait); }
            catch (AggregateException) { } // Ctrl+C cancelled the call: it answers at once, with the job as it is
            return Answer(job);
        }
        catch
        {
            // Bad input, or the cmdlet gone mid-call: no device stays open (exclusively) behind the admin's back.
            devices.CloseAll();
            throw;
        }
    }

    /// <summary>The byte range a prompt names: first to last byte, both included.</summary>
    internal static string Span(long offsetBytes, long lengthBytes) => $"{offsetBytes}-{offsetBytes + lengthBytes - 1}";

    /// <summary>A negative offset of any parameter is one error, told before a device is opened.</summary>
    private static KcopydException NegativeOffset(string parameter, long offset)
        => new("RegionOutOfRange", KcopydErrorKind.InvalidArgument, $"{parameter} {offset} is negative: a region starts at byte 0 or after it.", offset);

    private static KcopydException NotFound(long id)
        => new("CopyJobNotFound", KcopydErrorKind.NotFound, $"There is no copy job with Id {id}.", id);
}
