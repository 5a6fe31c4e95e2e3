namespace Kcopyd.Host;

/// <summary>
/// The unit for machines that want the host from boot (`Kcopyd.Host --systemd-unit > /etc/systemd/system/kcopyd.service`),
/// naming this very runtime and assembly, so it starts the host the module shipped.
/// </summary>
internal static class SystemdUnit
{
    public static string Text()
    {
        string dotnet = Environment.ProcessPath ?? "/usr/bin/dotnet";
        string assembly = typeof(SystemdUnit).Assembly.Location;
        // An apphost runs itself; the dotnet muxer needs the assembly named.
        string exec = Path.GetFileNameWithoutExtension(dotnet) == "dotnet" ? $"{dotnet} {assembly}" : dotnet;
        return $"""
            [Unit]
            Description=Kcopyd host: region copies and mirror devices (dm-kcopyd, dm-raid1) for the Kcopyd PowerShell module
            After=local-fs.target systemd-udev-settle.service
            Wants=systemd-udev-settle.service

            [Service]
            Type=simple
            ExecStart={exec}
            Environment=KCOPYD_RUNTIME_DIR={RuntimeDirectory.DefaultPath}
            Environment=KCOPYD_STATE_DIR={State.StateDirectory.DefaultPath}
            Environment=MALLOC_ARENA_MAX=2
            # Stopping closes mirrors cleanly (their definitions stay); a hung device bounds the jobs and closes at 5 s in all.
            KillSignal=SIGTERM
            TimeoutStopSec=60
            Restart=on-failure
            UMask=0077

            [Install]
            WantedBy=multi-user.target

            """;
    }
}
