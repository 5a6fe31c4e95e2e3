using System.Text.Json.Serialization;

namespace Kcopyd.Host.State;

/// <summary>What the host needs to assemble a mirror again when it starts; mirrors/NAME.json in the state directory.</summary>
public sealed class MirrorDefinition
{
    public const int CurrentFormatVersion = 1;

    // Every property is required so that a file cut short or written by hand cannot pass with a silent default.
    [JsonRequired] public int FormatVersion { get; set; } = CurrentFormatVersion;
    [JsonRequired] public string Name { get; set; } = "";

    /// <summary>In order: recovery copied from the first one when the mirror was created.</summary>
    [JsonRequired] public MirrorLegDefinition[] Legs { get; set; } = [];

    [JsonRequired] public long RegionSizeBytes { get; set; }

    /// <summary>Null: the mirror had an in-memory log.</summary>
    [JsonRequired] public string? LogPath { get; set; }

    [JsonRequired] public int RequestPoolSize { get; set; }
    [JsonRequired] public long RecoveryBytesPerSecond { get; set; }

    /// <summary>
    /// Seconds a leg may leave a request unanswered before it is failed as hung; 0: no limit. Not required: a
    /// definition written before the leg timeout existed has none, and gets the default.
    /// </summary>
    public int? LegTimeoutSeconds { get; set; }

    /// <summary>The legs were opened without exclusivity when the mirror was created.</summary>
    [JsonRequired] public bool Force { get; set; }

    [JsonRequired] public DateTimeOffset Created { get; set; }

    /// <summary>
    /// Where the mirror is published, so a restarted host serves it again. Not required: a definition written
    /// before exports were kept has none, which is what it meant.
    /// </summary>
    public ExportDefinition[] Exports { get; set; } = [];
}

/// <summary>One Publish-MirrorDevice that has not been undone: its address and whether it is attached as a block device.</summary>
public sealed record ExportDefinition
{
    /// <summary>The socket's path; null when <see cref="Listen"/> gives a TCP address.</summary>
    public string? UnixSocket { get; init; }

    public string? Listen { get; init; }

    public bool BlockDevice { get; init; }

    /// <summary>Null: served without TLS. The certificates are read again from it whenever the export is served.</summary>
    public string? TlsCertificateDirectory { get; init; }

    /// <summary>With TLS, clients need not show a certificate signed by the directory's CA.</summary>
    public bool TlsAnyClient { get; init; }

    public override string ToString() => UnixSocket ?? Listen ?? "";
}

/// <summary>One leg of a <see cref="MirrorDefinition"/>: a device or file, or another mirror stacked under this one.</summary>
public sealed class MirrorLegDefinition
{
    /// <summary>An absolute path, or the other mirror's name when <see cref="IsMirror"/>.</summary>
    [JsonRequired] public string Path { get; set; } = "";

    [JsonRequired] public bool IsMirror { get; set; }

    /// <summary>The leg's identity as recorded at creation, so a different device at the same path is noticed; may be empty.</summary>
    [JsonRequired] public string StableId { get; set; } = "";
}
