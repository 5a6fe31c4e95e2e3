namespace Kcopyd.Protocol;

/// <summary>Start-RegionCopy's request: one source, up to eight destinations.</summary>
public sealed class CopyJobRequest
{
    public string Client { get; set; } = "default";
    public DeviceRef Source { get; set; } = new();
    public DeviceRef[] Destinations { get; set; } = [];
    public long SourceOffset { get; set; }
    /// <summary>One offset for every destination, or one each.</summary>
    public long[] DestinationOffsets { get; set; } = [0];
    /// <summary>Null: the rest of the source after SourceOffset.</summary>
    public long? Length { get; set; }
    public bool IgnoreErrors { get; set; }
    public bool Force { get; set; }
    /// <summary>The job's own rate limit; 0 for none.</summary>
    public long MaxBytesPerSecond { get; set; }
    /// <summary>Re-read every destination and compare it with the source (-Verify).</summary>
    public bool Verify { get; set; }
    /// <summary>Zero chunks and holes of the source become zeroing on the destinations (-Sparse).</summary>
    public bool Sparse { get; set; }
    /// <summary>The destinations read as zeros already: zero chunks and holes are not written (-DestinationIsZero).</summary>
    public bool DestinationIsZero { get; set; }
    /// <summary>A copy map (-MapPath, an absolute path): resume from it, and record finished chunks in it.</summary>
    public string? MapPath { get; set; }
    /// <summary>The cmdlet will follow the job to its end (-Wait): it stays listed until then, whatever the history.</summary>
    public bool Follow { get; set; }
    /// <summary>
    /// The cmdlet's ShouldProcess would say yes without a prompt or a line of output (-Confirm:$false, no -WhatIf, no
    /// -Verbose), so the host need not ask it. A host that does not know this field asks, as before.
    /// </summary>
    public bool Confirmed { get; set; }
    /// <summary>The cmdlet shows verbose lines: the host tells it what the engine decided for the job.</summary>
    public bool Verbose { get; set; }
}

/// <summary>Clear-Region's request.</summary>
public sealed class ZeroJobRequest
{
    public string Client { get; set; } = "default";
    public DeviceRef Path { get; set; } = new();
    public long Offset { get; set; }
    public long Length { get; set; }
    public bool Force { get; set; }
    /// <summary>The job's own rate limit; 0 for none.</summary>
    public long MaxBytesPerSecond { get; set; }
    /// <summary>As CopyJobRequest.Follow.</summary>
    public bool Follow { get; set; }
    /// <summary>As CopyJobRequest.Confirmed.</summary>
    public bool Confirmed { get; set; }
    /// <summary>As CopyJobRequest.Verbose.</summary>
    public bool Verbose { get; set; }
}

/// <summary>New-MirrorDevice's request.</summary>
public sealed class NewMirrorRequest
{
    public string Name { get; set; } = "";
    public DeviceRef[] Legs { get; set; } = [];
    public long RegionSize { get; set; }
    public string? LogPath { get; set; }
    public bool NoSync { get; set; }
    public bool ResetLog { get; set; }
    public int RequestPoolSize { get; set; }
    public long RecoveryBytesPerSecond { get; set; }
    public bool Force { get; set; }
    /// <summary>Seconds a leg may leave a request unanswered before it is failed as hung; 0: no limit; null: the default (30).</summary>
    public int? LegTimeoutSeconds { get; set; }
}

/// <summary>How long finished jobs stay listed.</summary>
public sealed class HostSettingsChange
{
    public int? JobHistoryCount { get; set; }
    public TimeSpan? JobHistoryMaxAge { get; set; }
}

/// <summary>What WaitMirror answers: the mirror's status, and whether it is in sync.</summary>
public sealed class MirrorWait
{
    public MirrorInfo Status { get; set; } = new();
    public bool InSync { get; set; }
}

/// <summary>What RemoveMirror answers: false when I/O to a leg had not returned within the close timeout.</summary>
public sealed class MirrorRemoval
{
    public bool Closed { get; set; }
    public int CloseTimeoutSeconds { get; set; }
}

/// <summary>Publish-MirrorDevice's request: where to serve the mirror over NBD, and whether to attach it as a block device.</summary>
public sealed class PublishRequest
{
    public string Name { get; set; } = "";
    /// <summary>A Unix socket path (resolved by the cmdlet); with neither this nor Listen, one in the runtime directory.</summary>
    public string? UnixSocket { get; set; }
    /// <summary>HOST:PORT to listen on over TCP.</summary>
    public string? Listen { get; set; }
    public bool BlockDevice { get; set; }
    /// <summary>Require TLS with the certificates of this directory (resolved by the cmdlet): ca-cert.pem, server-cert.pem, server-key.pem.</summary>
    public string? TlsCertificateDirectory { get; set; }
    /// <summary>With TLS, do not ask clients for a certificate signed by ca-cert.pem.</summary>
    public bool TlsAnyClient { get; set; }
}

/// <summary>One export of a mirror, as Publish-MirrorDevice and Get-MirrorDevice report it.</summary>
public sealed class ExportInfo
{
    public string Mirror { get; set; } = "";
    /// <summary>nbd+unix:///?socket=... or nbd://host:port/; nbds+unix and nbds when TLS is required.</summary>
    public string Uri { get; set; } = "";
    public string? UnixSocket { get; set; }
    public string? Listen { get; set; }
    /// <summary>The kernel block device attached to the export (-BlockDevice), if any.</summary>
    public string? BlockDevice { get; set; }
    public int Connections { get; set; }
    public long TotalConnections { get; set; }
    public long Requests { get; set; }
    public long RequestErrors { get; set; }
    public long BytesRead { get; set; }
    public long BytesWritten { get; set; }

    public override string ToString() => BlockDevice == null ? Uri : $"{Uri} ({BlockDevice})";
}

/// <summary>New-CopyClient's request: null sizes take the engine's defaults.</summary>
public sealed class NewClientRequest
{
    public string Name { get; set; } = "";
    public int? PageCount { get; set; }
    public int? SubJobSize { get; set; }
    public long BytesPerSecond { get; set; }
    public int DutyCyclePercent { get; set; } = 100;
}

/// <summary>Set-CopyClient's request: only what is given changes.</summary>
public sealed class ClientChange
{
    public string Name { get; set; } = "";
    public long? BytesPerSecond { get; set; }
    public int? DutyCyclePercent { get; set; }
}
