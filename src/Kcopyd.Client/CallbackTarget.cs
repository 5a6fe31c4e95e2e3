using System.Collections.Concurrent;
using Kcopyd.Protocol;
using StreamJsonRpc;

namespace Kcopyd.Client;

/// <summary>The methods the host calls on the cmdlet's connection during a call; each names the call it belongs to.</summary>
internal sealed class CallbackTarget(ConcurrentDictionary<long, PendingCall> calls)
{
    [JsonRpcMethod(ControlProtocol.ShouldProcess)]
    public Task<bool> ShouldProcess(long callId, string target, string action)
        => calls.TryGetValue(callId, out var call) ? call.Ask(sink => sink.ShouldProcess(target, action)) : Task.FromResult(false);

    [JsonRpcMethod(ControlProtocol.Write)]
    public bool Write(long callId, MessageKind kind, string text) => Post(callId, sink => sink.Write(kind, text));

    [JsonRpcMethod(ControlProtocol.Progress)]
    public bool Progress(long callId, ProgressInfo progress) => Post(callId, sink => sink.Progress(progress));

    [JsonRpcMethod(ControlProtocol.Error)]
    public bool Error(long callId, RemoteError error) => Post(callId, sink => sink.Error(error.ToException()));

    private bool Post(long callId, Action<IOperationSink> write)
    {
        if (calls.TryGetValue(callId, out var call)) call.Post(write);
        return true;
    }
}
