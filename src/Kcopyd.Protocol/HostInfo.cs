namespace Kcopyd.Protocol;

/// <summary>What GetHost answers: who the host is, which protocol it speaks, and what it holds.</summary>
public sealed class HostInfo
{
    public int ProtocolVersion { get; set; }
    public int ProcessId { get; set; }
    public string Version { get; set; } = "";
    public DateTimeOffset StartTime { get; set; }
    public string SocketPath { get; set; } = "";
    public string StateDirectory { get; set; } = "";
    public int Clients { get; set; }
    /// <summary>Jobs listed: running and queued ones, and finished ones still in the history.</summary>
    public int Jobs { get; set; }
    public int RunningJobs { get; set; }
    public int Mirrors { get; set; }
    /// <summary>Mirror definitions the host could not assemble at its start, and why (their legs are missing, ...).</summary>
    public UnassembledMirror[] Unassembled { get; set; } = [];
    /// <summary>Publications the host could not serve again at its start, and block devices of a killed host still mounted.</summary>
    public ExportProblem[] ExportProblems { get; set; } = [];
    /// <summary>The host process's resident memory, and the bytes the .NET heap holds in objects.</summary>
    public long WorkingSetBytes { get; set; }
    public long ManagedHeapBytes { get; set; }
    /// <summary>How the default copy client submits I/O: "io_uring" or "blocking" (empty until it ran a job).</summary>
    public string IoBackend { get; set; } = "";
    public int JobHistoryCount { get; set; }
    public TimeSpan JobHistoryMaxAge { get; set; }

    public override string ToString() => $"Kcopyd host {ProcessId} ({Version}) on {SocketPath}";
}

/// <summary>A mirror the host keeps a definition of but could not assemble: it is reported, never dropped.</summary>
public sealed class UnassembledMirror
{
    public string Name { get; set; } = "";
    public string Reason { get; set; } = "";
    public override string ToString() => $"{Name}: {Reason}";
}

/// <summary>A mirror's publication the host keeps but does not serve, or a stale block device it left: reported, never dropped.</summary>
public sealed class ExportProblem
{
    public string Mirror { get; set; } = "";
    /// <summary>The socket path or HOST:PORT, or the stale block device's path.</summary>
    public string Address { get; set; } = "";
    public string Reason { get; set; } = "";
    public override string ToString() => $"{Mirror} on {Address}: {Reason}";
}
