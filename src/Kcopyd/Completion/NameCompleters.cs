using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using Kcopyd.Protocol;

namespace Kcopyd.Completion;

/// <summary>Completes the names of the host's mirror devices.</summary>
public sealed class MirrorNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters) => Complete(CompletionText.Unquote(wordToComplete));

    internal static IEnumerable<CompletionResult> Complete(string prefix)
        => HostQuery.Ask<MirrorInfo>(ControlMethods.GetMirrors)
            .Where(m => m.Name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            .OrderBy(m => m.Name, StringComparer.Ordinal)
            .Select(m => CompletionText.Result(m.Name, m.Name, CompletionResultType.ParameterValue, $"mirror device {m}"))
            .ToArray();
}

/// <summary>Completes the names of the host's copy clients.</summary>
public sealed class ClientNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        string prefix = CompletionText.Unquote(wordToComplete);
        return HostQuery.Ask<CopyClientInfo>(ControlMethods.GetClients)
            .Where(c => c.Name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            .Select(c => CompletionText.Result(c.Name, c.Name, CompletionResultType.ParameterValue, c.ToString()))
            .ToArray();
    }
}

/// <summary>Completes a leg of the mirror named by -Name (of every mirror while none is named) by its path.</summary>
public sealed class MirrorLegCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        string prefix = CompletionText.Unquote(wordToComplete);
        string? mirror = fakeBoundParameters["Name"] as string;
        return HostQuery.Ask<MirrorInfo>(ControlMethods.GetMirrors)
            .Where(m => mirror == null || m.Name.Equals(mirror, StringComparison.OrdinalIgnoreCase))
            .SelectMany(m => m.Legs.Select(l => (Mirror: m.Name, Leg: l)))
            .Where(x => x.Leg.Path.StartsWith(prefix, StringComparison.Ordinal))
            .Select(x => CompletionText.Result(x.Leg.Path, x.Leg.Path, CompletionResultType.ParameterValue, $"leg of mirror {x.Mirror}: {x.Leg}"))
            .ToArray();
    }
}

/// <summary>
/// Completes copy job ids, with what each job does as its tooltip: Stop-CopyJob offers the jobs still running,
/// Remove-CopyJob the finished ones; internal jobs only where -IncludeInternal is given.
/// </summary>
public sealed class CopyJobIdCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        string prefix = CompletionText.Unquote(wordToComplete);
        IEnumerable<CopyJobInfo> jobs = HostQuery.Ask<CopyJobInfo>(ControlMethods.GetJobs, [null]);
        if (fakeBoundParameters.Contains("IncludeInternal")) jobs = jobs.Concat(HostQuery.Ask<CopyJobInfo>(ControlMethods.GetInternalJobs));
        bool? finished = commandName switch
        {
            "Stop-CopyJob" => false,
            "Remove-CopyJob" => true,
            _ => null,
        };
        return jobs
            .Where(j => finished == null || j.IsFinished == finished)
            .Select(j => (Job: j, Text: j.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)))
            .Where(x => x.Text.StartsWith(prefix, StringComparison.Ordinal))
            .Select(x => CompletionText.Result(x.Text, x.Text, CompletionResultType.ParameterValue,
                $"{x.Text} {x.Job.State} {x.Job.Source ?? "(zeros)"} -> {string.Join(", ", x.Job.Destination)}"))
            .ToArray();
    }
}
