using System.Collections.Concurrent;
using System.Management.Automation;

namespace Kcopyd.Session.Jobs;

/// <summary>
/// Holds the -AsJob jobs of a session for PowerShell's JobManager, so Get-Job lists them and Remove-Job removes
/// them. PowerShell creates it (one per runspace) the first time a job names it.
/// </summary>
public sealed class KcopydJobSourceAdapter : JobSourceAdapter
{
    private readonly ConcurrentDictionary<Guid, Job2> _jobs = new();

    public KcopydJobSourceAdapter() => Name = nameof(KcopydJobSourceAdapter);

    /// <summary>Takes the job the cmdlet made (it comes as the specification's one parameter).</summary>
    public override Job2 NewJob(JobInvocationInfo specification)
    {
        var job = (KcopydCopyJob)specification.Parameters[0][0].Value;
        _jobs.TryAdd(job.InstanceId, job);
        return job;
    }

    public override IList<Job2> GetJobs() => _jobs.Values.ToArray();

    public override IList<Job2> GetJobsByName(string name, bool recurse)
        => _jobs.Values.Where(j => string.Equals(j.Name, name, StringComparison.OrdinalIgnoreCase)).ToArray();

    public override IList<Job2> GetJobsByCommand(string command, bool recurse)
        => _jobs.Values.Where(j => string.Equals(j.Command, command, StringComparison.OrdinalIgnoreCase)).ToArray();

    public override Job2? GetJobByInstanceId(Guid instanceId, bool recurse) => _jobs.GetValueOrDefault(instanceId);

    public override Job2? GetJobBySessionId(int id, bool recurse) => _jobs.Values.FirstOrDefault(j => j.Id == id);

    public override IList<Job2> GetJobsByState(JobState state, bool recurse)
        => _jobs.Values.Where(j => j.JobStateInfo.State == state).ToArray();

    public override IList<Job2> GetJobsByFilter(Dictionary<string, object> filter, bool recurse) => throw new PSNotSupportedException();

    /// <summary>
    /// Forgets the job and ends its follower thread. Remove-Job refuses a running job unless -Force, which stops
    /// it first; the copy job stays in the host's list (Remove-CopyJob removes it there).
    /// </summary>
    public override void RemoveJob(Job2 job)
    {
        if (_jobs.TryRemove(job.InstanceId, out var removed)) ((KcopydCopyJob)removed).StopFollowing();
    }
}
