using System.ComponentModel;
using System.Management.Automation;
using Kcopyd.Commands;
using Kcopyd.Connection;
using Kcopyd.Engine;
using Kcopyd.Protocol;

namespace Kcopyd.Session.Jobs;

/// <summary>
/// Start-RegionCopy -AsJob or Clear-Region -AsJob: a PowerShell job that follows a copy job in the Kcopyd host. Its
/// Progress stream is the copy's progress; when the copy ends, its warnings, its failure as an error record and the
/// final CopyJobInfo as output; its state is the copy job's. Stop-Job stops the copy job in the host.
/// </summary>
public sealed class KcopydCopyJob : Job2
{
    /// <summary>How long one WaitJob call waits: how often the Progress stream gets a new record.</summary>
    private const int ProgressIntervalMilliseconds = 500;

    /// <summary>How long Stop-Job waits for the copy to end (its chunks in flight return) before it gives the shell back.</summary>
    private static readonly TimeSpan StopWait = TimeSpan.FromSeconds(10);

    /// <summary>How long removing the job waits for its follower: a cancelled call returns within the channel's 2 s grace.</summary>
    private static readonly TimeSpan FollowerExit = TimeSpan.FromSeconds(5);

    private readonly IHostChannel _channel;
    private readonly string _activity;
    private readonly Thread _follower;
    private readonly ManualResetEventSlim _ended = new(false);
    private readonly object _stateLock = new();
    private volatile CopyJobInfo _last;
    private volatile bool _unfollowed;

    private KcopydCopyJob(IHostChannel channel, CopyJobInfo job)
        : base(CommandOf(job), $"CopyJob{job.Id}")
    {
        _channel = channel;
        _last = job;
        _activity = JobProgress.Activity(job);
        PSJobTypeName = "KcopydCopyJob";
        Output = new PSDataCollection<PSObject> { EnumeratorNeverBlocks = true };
        Error = new PSDataCollection<ErrorRecord> { EnumeratorNeverBlocks = true };
        Progress = new PSDataCollection<ProgressRecord> { EnumeratorNeverBlocks = true };
        Warning = new PSDataCollection<WarningRecord> { EnumeratorNeverBlocks = true };
        Verbose = new PSDataCollection<VerboseRecord> { EnumeratorNeverBlocks = true };
        Debug = new PSDataCollection<DebugRecord> { EnumeratorNeverBlocks = true };
        Information = new PSDataCollection<InformationRecord> { EnumeratorNeverBlocks = true };
        _follower = new Thread(Follow) { IsBackground = true, Name = $"Kcopyd job {job.Id}" };
    }

    /// <summary>The copy job's Id in the host (Get-CopyJob -Id, Stop-CopyJob -Id).</summary>
    public long CopyJobId => _last.Id;

    /// <summary>The copy job as last seen: its bytes copied, rate, and at the end its state and error.</summary>
    public CopyJobInfo CopyJob => _last;

    /// <summary>
    /// Makes the job for a copy job the host has started (after confirmation), adds it to the session's jobs and
    /// starts following it on a thread of its own: the cmdlet's pipeline thread is gone once it returns.
    /// </summary>
    internal static KcopydCopyJob Start(JobCommand cmdlet, IHostChannel channel, CopyJobInfo job)
    {
        var psJob = new KcopydCopyJob(channel, job);
        var definition = new JobDefinition(typeof(KcopydJobSourceAdapter), psJob.Command, psJob.Name);
        var specification = new JobInvocationInfo(definition, new Dictionary<string, object> { ["NewJob"] = psJob });
        cmdlet.JobManager.NewJob(specification);
        psJob.StartJob();
        return psJob;
    }

    public override string Location { get; } = HostConnection.RuntimeDirectory;

    public override string StatusMessage => JobProgress.Describe(_last);

    public override bool HasMoreData
        => Output.Count > 0 || Error.Count > 0 || Progress.Count > 0 || Warning.Count > 0 || Verbose.Count > 0 || Debug.Count > 0 || Information.Count > 0;

    public override void StartJob()
    {
        if (JobStateInfo.State != JobState.NotStarted) throw new PSInvalidOperationException($"Job {Name} has already started.");
        SetJobState(JobState.Running);
        _follower.Start();
    }

    public override void StartJobAsync()
    {
        StartJob();
        OnStartJobCompleted(new AsyncCompletedEventArgs(null, false, null));
    }

    public override void StopJob() => StopJob(force: false, reason: null);

    /// <summary>Stops the copy job in the host and waits (bounded) until the follower has seen it end.</summary>
    public override void StopJob(bool force, string? reason)
    {
        lock (_stateLock)
        {
            // Never after the end: a finished job must not look Stopping again.
            if (_ended.IsSet || _unfollowed) return;
            SetJobState(JobState.Stopping);
        }
        var waited = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            // Stop-Job has already asked; the host's own ShouldProcess for the stop is answered yes.
            _channel.Call<CopyJobInfo>(ControlMethods.StopJob, [_last.Id], new StreamSink(this, answer: true), () => waited.Elapsed > StopWait);
        }
        catch (KcopydException e)
        {
            Add(Error, ErrorRecords.From(e));
        }
        catch (OperationCanceledException)
        {
            // A host that does not answer: Stop-Job gives the shell back, the job stays Stopping until the follower knows.
        }
        var left = StopWait - waited.Elapsed;
        _ended.Wait(left > TimeSpan.Zero ? left : TimeSpan.Zero);
    }

    public override void StopJobAsync() => StopJobAsync(force: false, reason: null);

    public override void StopJobAsync(bool force, string? reason)
    {
        StopJob(force, reason);
        OnStopJobCompleted(new AsyncCompletedEventArgs(null, false, null));
    }

    public override void SuspendJob() => throw NotSupported("suspended");
    public override void SuspendJob(bool force, string reason) => throw NotSupported("suspended");
    public override void SuspendJobAsync() => throw NotSupported("suspended");
    public override void SuspendJobAsync(bool force, string reason) => throw NotSupported("suspended");
    public override void ResumeJob() => throw NotSupported("resumed");
    public override void ResumeJobAsync() => throw NotSupported("resumed");
    public override void UnblockJob() => throw NotSupported("unblocked");
    public override void UnblockJobAsync() => throw NotSupported("unblocked");

    /// <summary>The job leaves the session (Remove-Job): the follower's call is cancelled and its thread ends.</summary>
    internal void StopFollowing()
    {
        _unfollowed = true;
        if (_follower.IsAlive && !_follower.Join(FollowerExit))
            Add(Warning, new WarningRecord($"The follower of copy job {_last.Id} did not end within {FollowerExit.TotalSeconds:0} s."));
    }

    protected override void Dispose(bool disposing)
    {
        // _ended is not disposed: a follower that outlived StopFollowing's wait still sets it when its call returns.
        if (disposing) StopFollowing();
        base.Dispose(disposing);
    }

    /// <summary>
    /// The follower: asks the host for the job again and again (WaitJob answers at its end or after the interval),
    /// writing a progress record each time; at the end the job's warnings, error and CopyJobInfo, then its state.
    /// </summary>
    private void Follow()
    {
        var sink = new StreamSink(this, answer: false);
        try
        {
            var job = _last;
            while (!job.IsFinished)
            {
                Add(Progress, JobProgress.Progress(job, _activity));
                job = _channel.Call<CopyJobInfo>(ControlMethods.WaitJob, [job.Id, ProgressIntervalMilliseconds], sink, () => _unfollowed);
                _last = job;
            }
            Add(Progress, JobProgress.Progress(job, _activity));
            foreach (string warning in job.Warnings) Add(Warning, new WarningRecord(warning));
            if (JobProgress.Failure(job) is { } failure) Add(Error, failure);
            Add(Output, PSObject.AsPSObject(job));
            End(job.State switch
            {
                nameof(Engine.Copy.CopyJobState.Completed) => JobState.Completed,
                nameof(Engine.Copy.CopyJobState.Failed) => JobState.Failed,
                _ => JobState.Stopped,
            });
        }
        catch (OperationCanceledException)
        {
            End(JobState.Stopped); // removed from the session while running (Remove-Job -Force): the copy goes on in the host
        }
        catch (KcopydException e)
        {
            // The host went away, or forgot the job: the copy's end is unknown here.
            Add(Error, ErrorRecords.From(e));
            End(JobState.Failed);
        }
        catch (Exception e)
        {
            // Nothing may escape a thread of its own: it would take the whole shell down.
            Add(Error, new ErrorRecord(e, "CopyJobFollowFailed", ErrorCategory.NotSpecified, _last));
            End(JobState.Failed);
        }
    }

    /// <summary>The state last: a finished state closes the streams, and Wait-Job returns once it is set.</summary>
    private void End(JobState state)
    {
        lock (_stateLock)
        {
            try { SetJobState(state); }
            catch (ObjectDisposedException) { } // removed and disposed meanwhile
            finally { _ended.Set(); }
        }
    }

    /// <summary>Adds to a stream unless the job was disposed or finished meanwhile (its streams are then closed).</summary>
    private static void Add<T>(PSDataCollection<T> stream, T item)
    {
        try { stream.Add(item); }
        catch (Exception e) when (e is ObjectDisposedException or PSInvalidOperationException) { }
    }

    private static string CommandOf(CopyJobInfo job)
    {
        string destinations = string.Join(", ", job.Destination.Select((d, i) => $"{d} at {job.DestinationOffset.ElementAtOrDefault(i)}"));
        return job.Source == null
            ? $"Clear-Region: zero {job.BytesTotal} bytes of {destinations}"
            : $"Start-RegionCopy: copy {job.BytesTotal} bytes from {job.Source} at {job.SourceOffset} to {destinations}";
    }

    private PSNotSupportedException NotSupported(string what) => new($"A copy job cannot be {what}; Stop-Job stops it ({Name}, copy job {_last.Id}).");

    /// <summary>What the host says during the job's own calls goes to the job's streams, not to any cmdlet's.</summary>
    private sealed class StreamSink(KcopydCopyJob job, bool answer) : IOperationSink
    {
        public bool ShouldProcess(string target, string action) => answer;

        public void Write(MessageKind kind, string text)
        {
            if (kind == MessageKind.Warning) Add(job.Warning, new WarningRecord(text));
            else Add(job.Verbose, new VerboseRecord(text));
        }

        public void Progress(ProgressInfo progress) { }

        public void Error(KcopydException error) => Add(job.Error, ErrorRecords.From(error));
    }
}
