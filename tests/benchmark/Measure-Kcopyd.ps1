<#
.SYNOPSIS
    One Kcopyd measurement for Invoke-Benchmark.ps1, run in a pwsh process of its own.
.DESCRIPTION
    A process per measurement, so the time includes loading the module (Import-Module, JIT, connecting to the
    host) and the process's peak memory (VmHWM) belongs to this one operation alone. The cmdlets run in the Kcopyd
    host of KCOPYD_RUNTIME_DIR, which Invoke-Benchmark starts before the first measurement (its peak memory is read
    there, from /proc); the engine operations run the engine in this process, with no host. Prints one line of JSON:
    Seconds, JobSeconds (the job's own StartTime to EndTime), PeakKiB (this process's), State, IoBackend,
    HostProcessId (the host the cmdlets used; null for the engine operations), MedianSeconds and P99Seconds (the
    latency operations).
      Copy           Start-RegionCopy -Wait of LengthBytes from Source to each of Destination (comma-separated), with the
                     switches CopyOptions names
      EngineCopy     the same copy through the engine's API in this process (CopyClient.Copy, then Wait), no host
      Zero           Clear-Region -Wait of LengthBytes at offset 0 of Destination
      Jobs           JobCount copy jobs of JobBytes each through the engine's API: Seconds runs from the first
                     submit to the end of the last job, since a job rate should not include loading the module
      HostJobs       the same jobs through the host: Start-RegionCopy -Force without -Wait for each, then waiting
                     for all (Wait-CopyJob on the last, Get-CopyJob until none is queued or running)
      Latency        JobCount jobs of JobBytes, one after another, each timed alone from submit to Completed:
                     Start-RegionCopy -Wait (after a few untimed ones, so the pwsh and its connection are warm)
      EngineLatency  the same through the engine's API in this process: CopyClient.Copy, then Wait
      Resync         New-MirrorDevice over Source (the default leg) and each Destination, then Wait-MirrorDevice
      MirrorWrite    New-MirrorDevice -NoSync over the Destinations, then Start-RegionCopy -Wait from Source into it
      ExportWrite    New-MirrorDevice -NoSync over the Destinations, Publish-MirrorDevice on a Unix socket, then nbdcopy
                     --flush from Source into the export: JobSeconds is nbdcopy's own time
      ExportFio      New-MirrorDevice -NoSync over the Destinations, Publish-MirrorDevice -BlockDevice, then fio with
                     FioArguments on that block device: JobSeconds is fio's own time
      Compare        Compare-Region of LengthBytes of Source and Destination, which must be identical (State Completed);
                     JobSeconds is the compare alone, after Import-Module
      HostStart      the first cmdlet (Get-CopyJob), which starts the host: Seconds is its time; then, untimed, a
                     Start-RegionCopy -Wait and a Clear-Region -Wait of LengthBytes, so the host has run both once,
                     as a host that has served its users has
#>
param(
    [Parameter(Mandatory)]
    [ValidateSet('Copy', 'EngineCopy', 'Zero', 'Jobs', 'HostJobs', 'Latency', 'EngineLatency', 'Resync', 'MirrorWrite', 'ExportWrite', 'ExportFio', 'Compare', 'HostStart')]
    [string] $Operation,
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $Source,
    [Parameter(Mandatory)] [string] $Destination,
    [Parameter(Mandatory)] [long] $LengthBytes,
    [int] $JobCount = 10000,
    [int] $JobBytes = 64KB,
    # fio's options but --filename (ExportFio), joined by spaces.
    [string] $FioArguments,
    # Copy only: switches of Start-RegionCopy to add, comma-separated (Sparse, DestinationIsZero, Verify).
    [string] $CopyOptions
)

$ErrorActionPreference = 'Stop'
# No one watches the bar; -Wait still calls WriteProgress, the host just does not draw it.
$ProgressPreference = 'SilentlyContinue'
$clock = [Diagnostics.Stopwatch]::StartNew()
Import-Module $ModulePath
# Warm-up jobs of the latency operations: the first calls JIT the cmdlet, the engine and the connection.
$WarmUpJobs = 20

function Open-Devices {
    # The engine operations open the devices once, as a program using the engine's API would.
    $options = [Kcopyd.Engine.Devices.DeviceOpenOptions]
    [pscustomobject]@{
        From   = [Kcopyd.Engine.Devices.LinuxBlockDevice]::Open($Source, $options::ReadOnly)
        To     = @($Destination -split ',' | ForEach-Object { [Kcopyd.Engine.Devices.LinuxBlockDevice]::Open($_, $options::ReadWrite) })
        # The options of the host's default client.
        Client = [Kcopyd.Engine.Copy.CopyClient]::new([Kcopyd.Engine.Copy.CopyClientOptions]@{ Name = 'default' })
    }
}

function Close-Devices($Devices) {
    $Devices.Client.Dispose()
    $Devices.From.Dispose()
    $Devices.To | ForEach-Object { $_.Dispose() }
}

function New-Request($Devices, [long] $Offset, [long] $Bytes) {
    [Kcopyd.Engine.Copy.CopyRequest]@{
        Source            = $Devices.From
        SourceOffsetBytes = $Offset
        Destinations      = [Kcopyd.Engine.Copy.CopyDestination[]]@($Devices.To | ForEach-Object { [Kcopyd.Engine.Copy.CopyDestination]::new($_, $Offset) })
        LengthBytes       = $Bytes
    }
}

function Get-JobOffset([int] $Index) {
    # Past the end of the region the jobs wrap around: the same bytes again, so the result is unchanged.
    ([long]$Index * $JobBytes) % $LengthBytes
}

function Get-Latency([double[]] $Seconds) {
    # The median and the 99th percentile (nearest rank) of the timed jobs.
    $sorted = [double[]]@($Seconds | Sort-Object)
    $middle = [int][Math]::Floor($sorted.Count / 2)
    @{
        MedianSeconds = if ($sorted.Count % 2) { $sorted[$middle] } else { ($sorted[$middle - 1] + $sorted[$middle]) / 2 }
        P99Seconds    = $sorted[[int][Math]::Ceiling(0.99 * $sorted.Count) - 1]
    }
}

function Invoke-Export([switch] $BlockDevice, [scriptblock] $Transfer) {
    # A -NoSync mirror of the Destinations published by the host; the transfer's own time is timed alone too.
    New-MirrorDevice bench -Leg ($Destination -split ',') -NoSync -Confirm:$false | Out-Null
    try {
        $export = Publish-MirrorDevice bench -BlockDevice:$BlockDevice -Confirm:$false
        try {
            $transferClock = [Diagnostics.Stopwatch]::StartNew()
            & $Transfer $export
            if ($LASTEXITCODE) { throw "The transfer through $($export.Uri) failed with exit code $LASTEXITCODE" }
            $transferClock.Stop()
            $clock.Stop()
        } finally {
            Unpublish-MirrorDevice bench -Confirm:$false
        }
    } finally {
        Remove-MirrorDevice bench -Confirm:$false
    }
    @{ State = 'Completed'; JobSeconds = $transferClock.Elapsed.TotalSeconds } + (Get-HostFacts)
}

function Get-HostFacts {
    # After the clock stopped: which host served the cmdlets, and how its default client submits I/O.
    $hostInfo = Get-KcopydHost
    @{ HostProcessId = $hostInfo.ProcessId; IoBackend = $hostInfo.IoBackend }
}

function Invoke-EngineCopy {
    $devices = Open-Devices
    try {
        $job = $devices.Client.Copy((New-Request $devices 0 $LengthBytes))
        $job.WaitAsync().GetAwaiter().GetResult()
        $clock.Stop()
        @{ State = "$($job.State)"; Job = $job; IoBackend = $devices.Client.IoBackend }
    } finally {
        Close-Devices $devices
    }
}

function Invoke-Jobs {
    # Submits every job before waiting for any, then waits for all of them.
    $devices = Open-Devices
    try {
        $tasks = [Collections.Generic.List[Threading.Tasks.Task]]::new($JobCount)
        $jobs = [Collections.Generic.List[Kcopyd.Engine.Copy.CopyJob]]::new($JobCount)
        $clock.Restart()
        for ($i = 0; $i -lt $JobCount; $i++) {
            $job = $devices.Client.Copy((New-Request $devices (Get-JobOffset $i) $JobBytes))
            $jobs.Add($job)
            $tasks.Add($job.WaitAsync())
        }
        [Threading.Tasks.Task]::WaitAll($tasks.ToArray())
        $clock.Stop()
        $notDone = @($jobs | Where-Object State -ne 'Completed')
        @{ State = if ($notDone) { "$($notDone.Count) jobs not Completed" } else { 'Completed' }; IoBackend = $devices.Client.IoBackend }
    } finally {
        Close-Devices $devices
    }
}

function Invoke-HostJobs {
    # -Force: the host opens the devices for each job, exclusively without it, so a job would be refused
    # (DeviceInUse) while the one before it still writes the same device; the engine row opens them once.
    $copy = @{ Source = $Source; Destination = $Destination -split ','; Length = $JobBytes; Force = $true; Confirm = $false }
    Get-CopyJob | Out-Null   # the connection is made before the clock starts, as the engine row's devices are opened
    $clock.Restart()
    $first = $last = $null
    for ($i = 0; $i -lt $JobCount; $i++) {
        $offset = Get-JobOffset $i
        $last = Start-RegionCopy @copy -SourceOffset $offset -DestinationOffset $offset
        if (-not $first) { $first = $last }
    }
    Wait-CopyJob -Id $last.Id | Out-Null
    # The jobs of one client may end a little out of order: the others still running are waited for too.
    while (@(Get-CopyJob -State Queued, Running).Count) { Start-Sleep -Milliseconds 10 }
    $clock.Stop()
    # The history keeps the last finished jobs (1000 by default): those must all have completed; the
    # destination's checksum covers the rest.
    $listed = @(Get-CopyJob | Where-Object { $_.Id -ge $first.Id -and $_.Id -le $last.Id })
    $notDone = @($listed | Where-Object State -ne 'Completed')
    $state = if ($last.Id - $first.Id + 1 -ne $JobCount) { "$($last.Id - $first.Id + 1) job ids for $JobCount jobs (another client of this host?)" }
    elseif ($notDone) { "$($notDone.Count) of the last $($listed.Count) jobs not Completed" } else { 'Completed' }
    @{ State = $state } + (Get-HostFacts)
}

function Invoke-Latency([switch] $Engine) {
    $times = [Collections.Generic.List[double]]::new($JobCount)
    $failed = 0
    $devices = if ($Engine) { Open-Devices }
    try {
        $one = [Diagnostics.Stopwatch]::new()
        $clock.Restart()
        for ($i = -$WarmUpJobs; $i -lt $JobCount; $i++) {
            $offset = Get-JobOffset ([Math]::Max($i, 0))
            $one.Restart()
            $state = if ($Engine) {
                $job = $devices.Client.Copy((New-Request $devices $offset $JobBytes))
                $job.WaitAsync().GetAwaiter().GetResult()
                $job.State
            } else {
                (Start-RegionCopy -Source $Source -Destination ($Destination -split ',') -SourceOffset $offset -DestinationOffset $offset `
                    -Length $JobBytes -Wait -Confirm:$false).State
            }
            $one.Stop()
            if ("$state" -ne 'Completed') { $failed++ }
            if ($i -ge 0) { $times.Add($one.Elapsed.TotalSeconds) }
        }
        $clock.Stop()
        $result = @{ State = if ($failed) { "$failed jobs not Completed" } else { 'Completed' } } + (Get-Latency $times)
        if ($Engine) { $result + @{ IoBackend = $devices.Client.IoBackend } } else { $result + (Get-HostFacts) }
    } finally {
        if ($devices) { Close-Devices $devices }
    }
}

$result = switch ($Operation) {
    'Copy' {
        $switches = @{}
        foreach ($name in @($CopyOptions -split ',' | Where-Object { $_ })) { $switches[$name] = $true }
        $job = Start-RegionCopy -Source $Source -Destination ($Destination -split ',') -Length $LengthBytes -Wait -Confirm:$false @switches
        $clock.Stop()
        @{ State = "$($job.State)"; Job = $job } + (Get-HostFacts)
    }
    'EngineCopy' { Invoke-EngineCopy }
    'Zero' {
        $job = Clear-Region -Path $Destination -Offset 0 -Length $LengthBytes -Wait -Confirm:$false
        $clock.Stop()
        @{ State = "$($job.State)"; Job = $job } + (Get-HostFacts)
    }
    'Jobs' { Invoke-Jobs }
    'HostJobs' { Invoke-HostJobs }
    'Latency' { Invoke-Latency }
    'EngineLatency' { Invoke-Latency -Engine }
    'Resync' {
        New-MirrorDevice bench -Leg (@($Source) + ($Destination -split ',')) -Confirm:$false | Out-Null
        $status = Wait-MirrorDevice bench
        $clock.Stop()
        Remove-MirrorDevice bench -Confirm:$false
        # A mirror's recovery runs on its own client: the default client's backend says nothing of it.
        @{ State = if ($status.State -eq 'InSync') { 'Completed' } else { "$($status.State)" }; HostProcessId = (Get-KcopydHost).ProcessId }
    }
    'Compare' {
        # JobSeconds is the compare's own time, after the module is loaded.
        $own = [Diagnostics.Stopwatch]::StartNew()
        $found = @(Compare-Region $Source $Destination -Length $LengthBytes)
        $own.Stop()
        $clock.Stop()
        @{ State = if ($found.Count) { "$($found.Count) ranges differ" } else { 'Completed' }; JobSeconds = $own.Elapsed.TotalSeconds } + (Get-HostFacts)
    }
    'HostStart' {
        $clock.Restart()
        Get-CopyJob | Out-Null
        $clock.Stop()
        Start-RegionCopy -Source $Source -Destination $Destination -Length $LengthBytes -Wait -Confirm:$false | Out-Null
        Clear-Region -Path $Destination -Offset 0 -Length $LengthBytes -Wait -Confirm:$false | Out-Null
        @{ State = 'Completed' } + (Get-HostFacts)
    }
    'MirrorWrite' {
        $mirror = New-MirrorDevice bench -Leg ($Destination -split ',') -NoSync -Confirm:$false
        $job = Start-RegionCopy -Source $Source -Destination $mirror -Length $LengthBytes -Wait -Confirm:$false
        $clock.Stop()
        Remove-MirrorDevice bench -Confirm:$false
        @{ State = "$($job.State)"; Job = $job } + (Get-HostFacts)
    }
    'ExportWrite' { Invoke-Export -Transfer { param($export) nbdcopy --flush $Source $export.Uri } }
    'ExportFio' {
        Invoke-Export -BlockDevice -Transfer { param($export) fio ($FioArguments -split ' ') "--filename=$($export.BlockDevice)" | Out-Null }
    }
}

$peakKiB = [long]((Get-Content /proc/self/status | Where-Object { $_ -like 'VmHWM:*' }) -replace '\D', '')
[pscustomobject]@{
    Seconds       = $clock.Elapsed.TotalSeconds
    JobSeconds    = if ($result.Job) { ($result.Job.EndTime - $result.Job.StartTime).TotalSeconds } else { $result.JobSeconds }
    PeakKiB       = $peakKiB
    State         = $result.State
    IoBackend     = $result.IoBackend
    HostProcessId = $result.HostProcessId
    MedianSeconds = $result.MedianSeconds
    P99Seconds    = $result.P99Seconds
} | ConvertTo-Json -Compress
