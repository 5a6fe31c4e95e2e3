using Kcopyd.Protocol;
using StreamJsonRpc;

namespace Kcopyd.Host.Operations;

/// <summary>
/// One call of a cmdlet, seen from the host: what it asks the cmdlet (ShouldProcess, under -WhatIf and -Confirm
/// exactly as in the cmdlet's own process) and what it tells it (warnings, verbose lines, progress).
/// </summary>
internal sealed class OperationContext(JsonRpc rpc, long callId, CancellationToken cancellation)
{
    public CancellationToken Cancellation => cancellation;

    public bool ShouldProcess(string target, string action)
        => Wait(rpc.InvokeWithCancellationAsync<bool>(ControlProtocol.ShouldProcess, [callId, target, action], cancellation));

    public void WriteWarning(string text) => Write(MessageKind.Warning, text);

    public void WriteVerbose(string text) => Write(MessageKind.Verbose, text);

    /// <summary>A non-terminating error: the cmdlet writes it with its ErrorId and goes on.</summary>
    public void WriteError(Kcopyd.Engine.KcopydException error)
        => Wait(rpc.InvokeWithCancellationAsync<bool>(ControlProtocol.Error, [callId, RemoteError.Of(error)], cancellation));

    public void WriteProgress(ProgressInfo progress)
        => Wait(rpc.InvokeWithCancellationAsync<bool>(ControlProtocol.Progress, [callId, progress], cancellation));

    // A request, not a notification: the cmdlet has the message before it has the call's answer.
    private void Write(MessageKind kind, string text)
        => Wait(rpc.InvokeWithCancellationAsync<bool>(ControlProtocol.Write, [callId, kind, text], cancellation));

    private static T Wait<T>(Task<T> call) => call.GetAwaiter().GetResult();
}
