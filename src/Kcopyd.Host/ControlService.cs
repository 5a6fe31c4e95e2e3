using Kcopyd.Engine;
using Kcopyd.Engine.Mirror;
using Kcopyd.Host.Operations;
using Kcopyd.Host.Registry;
using Kcopyd.Protocol;
using StreamJsonRpc;

namespace Kcopyd.Host;

/// <summary>
/// The methods one connection may call: each a thin line into an operation. Every call runs on the thread pool
/// (the connection keeps reading, so the host's questions to the cmdlet get their answers), and an engine error
/// goes back with its ErrorId as the JSON-RPC error's data.
/// </summary>
internal sealed class ControlService(HostRegistry registry, HostOperations host, JsonRpc rpc, string runtimeDirectory) : IDisposable
{
    private const int KcopydErrorCode = ControlProtocol.KcopydErrorCode;

    private readonly CopyOperations _copies = new(registry);
    private readonly MirrorOperations _mirrors = new(registry);
    private readonly MirrorRepairOperations _repairs = new(registry);
    private readonly ExportOperations _exports = new(registry, runtimeDirectory);
    private readonly ClientOperations _clients = new(registry);
    private readonly TrustOperations _trust = new(registry);

    public HostInfo GetHost() => host.Info();

    public Task<bool> StopHost(bool force) => Run(() => host.Stop(force));

    public Task<HostInfo> GetHostStatus(long callId) => Run(host.Info);

    public Task<HostInfo> SetHost(long callId, HostSettingsChange change, CancellationToken c) => Run(callId, c, ctx => host.Set(ctx, change));

    public Task<CopyJobInfo?> StartCopy(long callId, CopyJobRequest request, CancellationToken c) => Run(callId, c, ctx => _copies.StartCopy(ctx, request));

    public Task<CopyJobInfo?> StartZero(long callId, ZeroJobRequest request, CancellationToken c) => Run(callId, c, ctx => _copies.StartZero(ctx, request));

    public Task<CopyJobInfo[]> GetJobs(long callId, long[]? ids) => Run(() => _copies.GetJobs(ids));

    public Task<CopyJobInfo[]> GetInternalJobs(long callId) => Run(() => _copies.GetInternalJobs());

    public Task<CopyJobInfo> WaitJob(long callId, long id, int timeoutMilliseconds, CancellationToken c) => Run(() => _copies.WaitJob(id, timeoutMilliseconds, c));

    public Task<CopyJobInfo> StopJob(long callId, long id, CancellationToken c) => Run(callId, c, ctx => _copies.StopJob(ctx, id));

    public Task<bool> RemoveJob(long callId, long id, CancellationToken c) => Run(callId, c, ctx => _copies.RemoveJob(ctx, id));

    public Task<CopyClientInfo?> NewClient(long callId, NewClientRequest request, CancellationToken c) => Run(callId, c, ctx => _clients.New(ctx, request));

    public Task<CopyClientInfo[]> GetClients(long callId) => Run(_clients.Get);

    public Task<CopyClientInfo?> SetClient(long callId, ClientChange change, CancellationToken c) => Run(callId, c, ctx => _clients.Set(ctx, change));

    public Task<CopyClientInfo?> RemoveClient(long callId, string name, bool force, CancellationToken c) => Run(callId, c, ctx => _clients.Remove(ctx, name, force));

    public Task<MirrorInfo?> NewMirror(long callId, NewMirrorRequest request, CancellationToken c) => Run(callId, c, ctx => _mirrors.NewMirror(ctx, request));

    public Task<MirrorInfo[]> GetMirrors(long callId) => Run(_mirrors.GetMirrors);

    public Task<MirrorWait> WaitMirror(long callId, string name, int timeoutMilliseconds, CancellationToken c) => Run(() => _mirrors.WaitMirror(name, timeoutMilliseconds, c));

    public Task<MirrorInfo?> SetMirror(long callId, string name, long? recoveryBytesPerSecond, int? legTimeoutSeconds, CancellationToken c)
        => Run(callId, c, ctx => _mirrors.SetMirror(ctx, name, recoveryBytesPerSecond, legTimeoutSeconds));

    public Task<MirrorRemoval?> RemoveMirror(long callId, string name, bool force, CancellationToken c) => Run(callId, c, ctx => _mirrors.RemoveMirror(ctx, name, force));

    public Task<MirrorInfo?> RepairMirror(long callId, string name, CancellationToken c) => Run(callId, c, ctx => _repairs.RepairMirror(ctx, name));

    public Task<MirrorInfo?> ReplaceLeg(long callId, string name, string oldLeg, DeviceRef newLeg, bool force, CancellationToken c)
        => Run(callId, c, ctx => _repairs.ReplaceLeg(ctx, name, oldLeg, newLeg, force));

    public Task<MirrorInfo?> AddLeg(long callId, string name, DeviceRef leg, bool force, CancellationToken c) => Run(callId, c, ctx => _repairs.AddLeg(ctx, name, leg, force));

    public Task<MirrorInfo?> RemoveLeg(long callId, string name, string leg, CancellationToken c) => Run(callId, c, ctx => _repairs.RemoveLeg(ctx, name, leg));

    public Task<RegionMismatchInfo[]?> TestMirror(long callId, string name, bool repair, CancellationToken c) => Run(callId, c, ctx => _repairs.TestMirror(ctx, name, repair));

    public Task<ExportInfo?> PublishMirror(long callId, PublishRequest request, CancellationToken c) => Run(callId, c, ctx => _exports.Publish(ctx, request));

    public Task<ExportInfo[]?> UnpublishMirror(long callId, string name, bool force, CancellationToken c) => Run(callId, c, ctx => _exports.Unpublish(ctx, name, force));

    public Task<ExportInfo[]> GetExports(long callId, string? name) => Run(() => _exports.Get(name));

    public Task<CompareResult> CompareRegion(long callId, CompareRequest request, CancellationToken c) => Run(callId, c, ctx => _trust.Compare(ctx, request));

    public Task<RegionHashInfo> HashRegion(long callId, HashRequest request, CancellationToken c) => Run(callId, c, ctx => _trust.Hash(ctx, request));

    /// <summary>The connection ended.</summary>
    public void Dispose() => _copies.Dispose();

    /// <summary>
    /// An operation that asks the cmdlet back blocks a pool thread while it waits for the answer; the host starts with
    /// enough pool threads (Program) that the continuations bringing the answers never wait for the pool to grow.
    /// </summary>
    private Task<T> Run<T>(long callId, CancellationToken cancellation, Func<OperationContext, T> operation)
        => Run(() => operation(new OperationContext(rpc, callId, cancellation)));

    private Task<T> Run<T>(Func<T> operation) => Run(() => Task.FromResult(operation()));

    private Task<T> Run<T>(Func<Task<T>> operation) => Task.Run(async () =>
    {
        try
        {
            return await operation();
        }
        catch (KcopydException e)
        {
            throw new LocalRpcException(e.Message) { ErrorCode = KcopydErrorCode, ErrorData = RemoteError.Of(e) };
        }
        catch (Exception e) when (e is not OperationCanceledException and not LocalRpcException)
        {
            // A bug, not bad input: logged whole here, and named to the admin with its ErrorId.
            registry.Log.WriteLine($"A call failed: {e}");
            throw new LocalRpcException($"The Kcopyd host failed: {e.Message} (its log says more).")
            {
                ErrorCode = KcopydErrorCode,
                ErrorData = new RemoteError { ErrorId = "HostError", Kind = KcopydErrorKind.InvalidOperation, Message = $"The Kcopyd host failed: {e.Message} (its log says more)." },
            };
        }
    });
}
