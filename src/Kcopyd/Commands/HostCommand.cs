using System.Management.Automation;
using Kcopyd.Connection;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>
/// What every cmdlet shares: it is a thin client of the Kcopyd host. A call runs in the host, which asks this
/// cmdlet to confirm (-WhatIf, -Confirm) and tells it warnings and progress; a host error is an ErrorRecord with
/// the host's ErrorId; Ctrl+C cancels the call and gives the shell back within seconds.
/// </summary>
public abstract class HostCommand : PSCmdlet
{
    /// <summary>Calls the host; an error there is a terminating error here.</summary>
    internal T Call<T>(string method, params object?[] arguments)
    {
        try
        {
            return CallOrThrow<T>(method, arguments);
        }
        catch (KcopydException ex)
        {
            ThrowTerminatingError(ErrorRecords.From(ex));
            throw; // not reached: ThrowTerminatingError throws
        }
    }

    /// <summary>
    /// Calls the host for one input object: a refusal of it is a non-terminating error (so -ErrorAction and
    /// -ErrorVariable work) and the pipeline goes on with the next; default is returned then. Terminating only where
    /// nothing can go on: no host to ask (unreachable, of another version, not ours to use), or Ctrl+C.
    /// </summary>
    internal T? CallOrWriteError<T>(string method, params object?[] arguments)
    {
        try
        {
            return CallOrThrow<T>(method, arguments);
        }
        catch (KcopydException ex) when (!EndsThePipeline(ex.ErrorId))
        {
            WriteError(ErrorRecords.From(ex));
            return default;
        }
        catch (KcopydException ex)
        {
            ThrowTerminatingError(ErrorRecords.From(ex));
            throw; // not reached: ThrowTerminatingError throws
        }
    }

    /// <summary>Errors of the connection, not of the input: the next object would meet them too.</summary>
    private static bool EndsThePipeline(string errorId) => errorId is
        "HostStartFailed" or "HostNotAnswering" or "HostConnectionLost" or "HostVersionMismatch" or "HostAccessDenied";

    /// <summary>Calls the host; an error there is a KcopydException for the caller to write as it sees fit.</summary>
    internal T CallOrThrow<T>(string method, params object?[] arguments)
    {
        try
        {
            try
            {
                return (LastChannel = HostConnection.Get()!).Call<T>(method, arguments, new Sink(this), () => Stopping);
            }
            catch (KcopydException e) when (e.ErrorId == "HostConnectionLost" && Rereadable.Contains(method))
            {
                // The host went away before it answered a question that changes nothing: ask the next host.
                return (LastChannel = HostConnection.Get()!).Call<T>(method, arguments, new Sink(this), () => Stopping);
            }
        }
        catch (OperationCanceledException)
        {
            throw new PipelineStoppedException();
        }
    }

    /// <summary>
    /// The connection of this cmdlet's last call. A job it started or found lives in that host only: following it
    /// goes through <see cref="CallOn{T}"/>, so a host killed between two calls is HostConnectionLost, not a new
    /// host that never heard of the job (CopyJobNotFound).
    /// </summary>
    internal IHostChannel? LastChannel { get; private set; }

    /// <summary>Calls this very connection, never a new host; an error there is a terminating error here.</summary>
    internal T CallOn<T>(IHostChannel channel, string method, params object?[] arguments)
    {
        try
        {
            return channel.Call<T>(method, arguments, new Sink(this), () => Stopping);
        }
        catch (OperationCanceledException)
        {
            throw new PipelineStoppedException();
        }
        catch (KcopydException ex)
        {
            ThrowTerminatingError(ErrorRecords.From(ex));
            throw; // not reached: ThrowTerminatingError throws
        }
    }

    /// <summary>Calls that only read, so asking them again of a new host is safe (a wait is not: its job died with the host).</summary>
    private static readonly HashSet<string> Rereadable =
    [
        ControlMethods.GetJobs, ControlMethods.GetInternalJobs, ControlMethods.GetMirrors, ControlMethods.GetClients, ControlMethods.GetHostStatus,
        ControlMethods.CompareRegion, ControlMethods.HashRegion,
    ];

    /// <summary>The cmdlet's streams, as the host uses them during a call (always on the pipeline thread).</summary>
    private sealed class Sink(HostCommand cmdlet) : IOperationSink
    {
        public bool ShouldProcess(string target, string action) => cmdlet.ShouldProcess(target, action);

        public void Write(MessageKind kind, string text)
        {
            if (kind == MessageKind.Warning) cmdlet.WriteWarning(text);
            else cmdlet.WriteVerbose(text);
        }

        public void Progress(ProgressInfo progress)
            => cmdlet.WriteProgress(new ProgressRecord(progress.ActivityId, progress.Activity, progress.Status.Length > 0 ? progress.Status : " ")
            {
                PercentComplete = progress.PercentComplete,
                RecordType = progress.Completed ? ProgressRecordType.Completed : ProgressRecordType.Processing,
            });

        public void Error(KcopydException error) => cmdlet.WriteError(ErrorRecords.From(error));
    }
}
