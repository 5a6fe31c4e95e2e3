using System.Net;
using Kcopyd.Engine;
using Kcopyd.Engine.Nbd;
using Kcopyd.Host.Exports;
using Kcopyd.Host.Registry;
using Kcopyd.Host.State;
using Kcopyd.Protocol;

namespace Kcopyd.Host.Operations;

/// <summary>Publish- and Unpublish-MirrorDevice: a mirror served over NBD from the host, and attached as a block device.</summary>
internal sealed class ExportOperations(HostRegistry registry, string runtimeDirectory)
{
    /// <summary>The new export, or null when ShouldProcess said no. It is kept in the mirror's definition: a restarted host serves it again.</summary>
    public ExportInfo? Publish(OperationContext context, PublishRequest r)
    {
        var mirror = registry.Mirrors.Get(r.Name);
        if (r.UnixSocket != null && r.Listen != null)
            throw new KcopydException("InvalidExportAddress", KcopydErrorKind.InvalidArgument, "Give -UnixSocket or -Listen, not both.", r.Name);
        var definition = new ExportDefinition
        {
            UnixSocket = r.Listen == null ? r.UnixSocket ?? DefaultSocket(mirror.Name) : null,
            Listen = r.Listen,
            BlockDevice = r.BlockDevice,
            TlsCertificateDirectory = r.TlsCertificateDirectory,
            TlsAnyClient = r.TlsAnyClient,
        };
        IPEndPoint? endPoint = r.Listen == null ? null : ParseListen(r.Listen);
        if (definition.UnixSocket != null) CheckSocketPath(definition.UnixSocket, registry.Log);
        var tls = Tls(definition, r.Name);
        if (!context.ShouldProcess(mirror.Name, $"Serve over NBD on {definition}{(r.BlockDevice ? " and attach it as a block device" : "")}")) return null;
        if (endPoint != null && !IPAddress.IsLoopback(endPoint.Address) && tls is not { VerifiesClients: true })
            context.WriteWarning(tls == null
                ? $"Mirror '{mirror.Name}' is served on {r.Listen}, beyond this machine, without TLS: anyone who reaches that address can read and write it."
                : $"Mirror '{mirror.Name}' is served on {r.Listen}, beyond this machine, to clients without certificates (-TlsAnyClient): the traffic is encrypted, but anyone who reaches that address can read and write it.");
        var export = Serve(mirror, definition, tls);
        registry.Mirrors.AddExport(mirror.Name, definition);
        return export.Info();
    }

    /// <summary>
    /// Serves every publication the assembled mirrors' definitions keep, as they were before the host stopped or was
    /// killed; one that cannot be served now is reported (Get-KcopydHost) and kept for the next start.
    /// </summary>
    public void RepublishAll()
    {
        foreach (var mirror in registry.Mirrors.All)
        {
            foreach (var definition in registry.Mirrors.ExportsOf(mirror.Name))
            {
                try
                {
                    if (definition.UnixSocket != null) CheckSocketPath(definition.UnixSocket, registry.Log);
                    var export = Serve(mirror, definition, Tls(definition, mirror.Name));
                    registry.Log.WriteLine($"Serving mirror '{mirror.Name}' again on {export.Uri}{(export.Attachment is { } a ? $", attached as {a.DevicePath}" : "")}.");
                }
                catch (KcopydException e)
                {
                    Report(mirror.Name, definition.ToString(), e.Message);
                }
            }
        }
    }

    /// <summary>Block devices left by a host that was killed; the ones still mounted or held cannot be taken away, and are reported.</summary>
    public void RemoveStaleAttachments()
    {
        foreach (var held in StaleAttachments.Remove(Path.Combine(runtimeDirectory, "exports"), registry.Log))
            Report(held.Mirror, held.DevicePath,
                $"the block device the host attached before it was stopped is still mounted or held open, and its I/O fails: unmount it, then use the mirror's new block device (Get-MirrorDevice)");
    }

    private void Report(string mirror, string address, string reason)
    {
        reason = reason.TrimEnd('.');
        lock (registry.ExportProblems) registry.ExportProblems.Add(new ExportProblem { Mirror = mirror, Address = address, Reason = reason });
        registry.Log.WriteLine($"Mirror '{mirror}' is not served on {address}: {reason}.");
    }

    /// <summary>Starts serving a checked publication, and attaches its block device; nothing is left behind when that fails.</summary>
    private MirrorExport Serve(Kcopyd.Engine.Mirror.MirrorDevice mirror, ExportDefinition definition, NbdServerTls? tls)
    {
        string? socketPath = definition.UnixSocket;
        var endPoint = definition.Listen == null ? null : ParseListen(definition.Listen);
        var listener = socketPath != null ? MirrorExport.ListenUnix(socketPath) : ListenTcp(endPoint!);
        var server = NbdServer.Start(listener, new NbdExport(mirror) { Description = $"Kcopyd mirror {mirror.Name}", Tls = tls }, registry.Log);
        string scheme = tls != null ? "nbds" : "nbd";
        string uri = socketPath != null ? $"{scheme}+unix:///?socket={socketPath}" : $"{scheme}://{FormatHost(endPoint!)}/";
        var export = new MirrorExport(mirror.Name, server, uri, socketPath, definition.Listen);
        try
        {
            if (definition.BlockDevice)
                export.Attach(Path.Combine(runtimeDirectory, "exports", $"{mirror.Name}-{Guid.NewGuid().ToString("N")[..8]}{StaleAttachments.FolderSuffix}"));
        }
        catch
        {
            export.StopAsync().Wait(TimeSpan.FromSeconds(30));
            throw;
        }
        registry.Exports.Add(export);
        return export;
    }

    public ExportInfo[] Get(string? name)
        => (name == null ? registry.Exports.All : registry.Exports.Of(registry.Mirrors.Get(name).Name)).Select(e => e.Info()).ToArray();

    /// <summary>
    /// Ends the mirror's exports and forgets them, also the ones a restart could not serve again; a block device
    /// that is mounted, or clients connected, are refused unless forced.
    /// </summary>
    public ExportInfo[]? Unpublish(OperationContext context, string name, bool force)
    {
        var mirror = registry.Mirrors.Get(name);
        var exports = registry.Exports.Of(mirror.Name);
        if (!force) RefuseIfInUse(mirror.Name, exports, "Unpublish-MirrorDevice -Force");
        var kept = registry.Mirrors.ExportsOf(mirror.Name);
        if (exports.Length == 0 && kept.Length == 0) return [];
        string what = exports.Length > 0 ? $"Stop serving on {string.Join(", ", exports.Select(e => e.Uri))}" : $"Forget the publication on {string.Join(", ", kept.Select(k => k.ToString()))}, not served now";
        if (!context.ShouldProcess(mirror.Name, what)) return null;
        lock (registry.ExportProblems) registry.ExportProblems.RemoveAll(p => p.Mirror.Equals(mirror.Name, StringComparison.OrdinalIgnoreCase));
        var ended = exports.Select(e => e.Info()).ToArray();
        registry.Mirrors.RemoveExports(mirror.Name);
        foreach (var export in exports)
        {
            registry.Exports.Remove(export);
            export.StopAsync().Wait(TimeSpan.FromSeconds(30));
        }
        return ended;
    }

    /// <summary>A mounted block device of the export, or an NBD client connected to it, would lose its device.</summary>
    public static void RefuseIfInUse(string mirror, MirrorExport[] exports, string how)
    {
        if (exports.FirstOrDefault(e => e.Attachment is { InUse: true }) is { } mounted)
            throw new KcopydException("ExportInUse", KcopydErrorKind.ResourceBusy,
                $"Mirror '{mirror}' is attached as {mounted.Attachment!.DevicePath}, which is mounted or held open: unmount it first, or use {how}.", mirror);
        // The attached block device is a client of its own export: only others count.
        if (exports.FirstOrDefault(e => e.OtherClients > 0) is { } used)
            throw new KcopydException("ExportInUse", KcopydErrorKind.ResourceBusy,
                $"Mirror '{mirror}' has {used.OtherClients} NBD client(s) connected on {used.Uri}: disconnect them first, or use {how}.", mirror);
    }

    /// <summary>The export's TLS, read and checked before anything is served; null without -TlsCertificateDirectory.</summary>
    private static NbdServerTls? Tls(ExportDefinition r, string mirror)
    {
        if (r.TlsCertificateDirectory == null)
        {
            if (r.TlsAnyClient)
                throw new KcopydException("TlsAnyClientWithoutTls", KcopydErrorKind.InvalidArgument, "-TlsAnyClient only means something with -TlsCertificateDirectory.", mirror);
            return null;
        }
        // nbdfuse takes certificates only through a URI's tls-certificates, and libnbd refuses that local file access
        // to it: the block device needs an export of its own, on the private Unix socket it is for anyway.
        if (r.BlockDevice)
            throw new KcopydException("TlsBlockDeviceUnsupported", KcopydErrorKind.InvalidOperation,
                $"A TLS export cannot be attached as a block device (nbdfuse cannot be given certificates): publish mirror '{mirror}' a second time, with -BlockDevice and without -TlsCertificateDirectory, on its private Unix socket.", mirror);
        return NbdServerTls.FromDirectory(r.TlsCertificateDirectory, verifyClients: !r.TlsAnyClient);
    }

    private string DefaultSocket(string mirror)
    {
        string folder = Path.Combine(runtimeDirectory, "exports");
        PrivateDirectory.Prepare(folder, "exports directory", RuntimeDirectory.Variable, PrivateDirectory.OwnerOnly);
        return Path.Combine(folder, mirror + ".sock");
    }

    /// <summary>
    /// A socket of root's in a directory only root (or the host's user) can write, and nothing there yet but,
    /// perhaps, the socket of a host that was killed (ours, and nobody answers on it), which is removed.
    /// </summary>
    private static void CheckSocketPath(string path, TextWriter log)
    {
        string directory = Path.GetDirectoryName(path) ?? "/";
        int errno = Posix.Lstat(directory, out var st);
        if (errno != 0 || Posix.Type(st) != (uint)Tmds.Linux.LibC.S_IFDIR || !Posix.IsOurs(st) || ((uint)st.st_mode & 0x12) != 0)
            throw new KcopydException("InvalidExportAddress", KcopydErrorKind.InvalidArgument,
                $"The socket's directory '{directory}' must be a real directory of root's that others cannot write to (another user could replace the socket).", path);
        if (StaleSocket.RemoveIfStale(path)) log.WriteLine($"Removed the socket '{path}' of a host that was stopped: nobody answered on it.");
        if (Posix.Lstat(path, out _) == 0)
            throw new KcopydException("ExportAddressInUse", KcopydErrorKind.ResourceBusy, $"'{path}' exists already: choose another -UnixSocket, or remove it.", path);
    }

    private static IPEndPoint ParseListen(string listen)
    {
        if (!IPEndPoint.TryParse(listen, out var endPoint) || endPoint.Port == 0)
        {
            // A name (localhost) rather than an address.
            int colon = listen.LastIndexOf(':');
            if (colon > 0 && int.TryParse(listen[(colon + 1)..], out int port) && port is > 0 and < 65536
                && Dns.GetHostAddresses(listen[..colon]).FirstOrDefault() is { } address)
                return new IPEndPoint(address, port);
            throw new KcopydException("InvalidExportAddress", KcopydErrorKind.InvalidArgument, $"-Listen takes HOST:PORT (127.0.0.1:10809, [::1]:10809), not '{listen}'.", listen);
        }
        return endPoint;
    }

    private static System.Net.Sockets.Socket ListenTcp(IPEndPoint endPoint)
    {
        var socket = new System.Net.Sockets.Socket(endPoint.AddressFamily, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        try
        {
            socket.Bind(endPoint);
            return socket;
        }
        catch (System.Net.Sockets.SocketException e)
        {
            socket.Dispose();
            throw new KcopydException("ExportAddressInUse", KcopydErrorKind.ResourceBusy, $"Cannot listen on {endPoint}: {e.Message}", endPoint.ToString());
        }
    }

    private static string FormatHost(IPEndPoint endPoint)
        => endPoint.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{endPoint.Address}]:{endPoint.Port}" : $"{endPoint.Address}:{endPoint.Port}";
}
