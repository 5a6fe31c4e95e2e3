using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Protocol;

namespace Kcopyd.Commands;

/// <summary>
/// Serves a mirror device over NBD from the Kcopyd host, on a Unix socket (by default one in the runtime directory,
/// which only root can reach) or on TCP; with -BlockDevice also attaches it as a kernel block device for mkfs,
/// mount and fio. Every NBD request goes through the mirror's request pool and region states like any other. With
/// -TlsCertificateDirectory every client must start TLS, and show a certificate the directory's CA signed.
/// </summary>
[Cmdlet(VerbsData.Publish, "MirrorDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = UnixSet)]
[OutputType(typeof(ExportInfo))]
public sealed class PublishMirrorDeviceCommand : HostCommand
{
    private const string UnixSet = "Unix";
    private const string TcpSet = "Tcp";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(MirrorNameCompleter))]
    public string Name { get; set; } = null!;

    /// <summary>The Unix socket to serve on (created 0600, in a directory others cannot write).</summary>
    [Parameter(ParameterSetName = UnixSet)]
    [ValidateNotNullOrEmpty]
    public string? UnixSocket { get; set; }

    /// <summary>HOST:PORT to serve on over TCP; an address beyond loopback gets a warning unless TLS checks clients.</summary>
    [Parameter(Mandatory = true, ParameterSetName = TcpSet)]
    [ValidateNotNullOrEmpty]
    public string Listen { get; set; } = null!;

    /// <summary>Also attach the export as a block device (nbdfuse and a loop device here) and show its path.</summary>
    [Parameter]
    public SwitchParameter BlockDevice { get; set; }

    /// <summary>
    /// Require TLS (X.509) with the certificates of this directory, in nbdkit's and qemu's layout: ca-cert.pem,
    /// server-cert.pem and server-key.pem (not readable by every user). Clients must show a certificate ca-cert.pem signed.
    /// </summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? TlsCertificateDirectory { get; set; }

    /// <summary>With -TlsCertificateDirectory, do not ask clients for a certificate: encrypted, but open to anyone who reaches the address.</summary>
    [Parameter]
    public SwitchParameter TlsAnyClient { get; set; }

    protected override void ProcessRecord()
    {
        var request = new PublishRequest
        {
            Name = Name,
            UnixSocket = UnixSocket == null ? null : SessionState.Path.GetUnresolvedProviderPathFromPSPath(UnixSocket),
            Listen = ParameterSetName == TcpSet ? Listen : null,
            BlockDevice = BlockDevice,
            TlsCertificateDirectory = TlsCertificateDirectory == null ? null : SessionState.Path.GetUnresolvedProviderPathFromPSPath(TlsCertificateDirectory),
            TlsAnyClient = TlsAnyClient,
        };
        if (CallOrWriteError<ExportInfo?>(ControlMethods.PublishMirror, request) is { } export) WriteObject(export);
    }
}
