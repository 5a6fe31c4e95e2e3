using Kcopyd.Connection;
using Kcopyd.Protocol;

namespace Kcopyd.Completion;

/// <summary>
/// What a completer asks of the host: only of a host that runs already (a Tab never starts one), answered within
/// <see cref="Timeout"/> (a hung host must not hang the prompt), and nothing at all when anything goes wrong.
/// </summary>
internal static class HostQuery
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2);

    private static Task? s_pending;

    public static T[] Ask<T>(string method, params object?[] arguments)
    {
        // No socket, no host: not even the RPC client is loaded for it.
        if (!File.Exists(Path.Combine(HostConnection.RuntimeDirectory, ControlProtocol.SocketName))) return [];
        // A host that did not answer the last Tab gets no second question stacked behind the first.
        if (s_pending is { IsCompleted: false }) return [];
        long deadline = Environment.TickCount64 + (long)Timeout.TotalMilliseconds;
        // On a thread of its own: connecting to a host that takes connections but does not answer blocks for longer.
        var answer = Task.Run(() => HostConnection.Get(start: false)?.Call<T[]>(method, arguments, null, () => Environment.TickCount64 > deadline));
        s_pending = answer;
        try
        {
            return answer.Wait(Timeout) ? answer.Result ?? [] : [];
        }
        catch (AggregateException)
        {
            return [];
        }
    }
}
