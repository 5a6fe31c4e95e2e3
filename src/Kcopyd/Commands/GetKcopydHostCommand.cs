using System.Management.Automation;
using Kcopyd.Connection;
using Kcopyd.Engine;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Shows the Kcopyd host this session talks to (KCOPYD_RUNTIME_DIR): its process, version, socket and what it holds. It starts none.</summary>
[Cmdlet(VerbsCommon.Get, "KcopydHost")]
[OutputType(typeof(HostInfo))]
public sealed class GetKcopydHostCommand : HostCommand
{
    protected override void EndProcessing()
    {
        try
        {
            if (HostConnection.Get(start: false) == null)
            {
                WriteError(ErrorRecords.Create("HostNotRunning", ErrorCategory.ObjectNotFound, HostConnection.RuntimeDirectory,
                    $"No Kcopyd host runs on '{HostConnection.RuntimeDirectory}'. Any Kcopyd cmdlet that needs one starts it."));
                return;
            }
        }
        catch (KcopydException ex)
        {
            ThrowTerminatingError(ErrorRecords.From(ex));
        }
        var info = Call<HostInfo>(ControlMethods.GetHostStatus);
        foreach (var mirror in info.Unassembled)
            WriteWarning($"Mirror '{mirror.Name}' is defined but was not assembled: {mirror.Reason}.");
        foreach (var problem in info.ExportProblems)
            WriteWarning($"Mirror '{problem.Mirror}' is not served on {problem.Address}: {problem.Reason}.");
        WriteObject(info);
    }
}
