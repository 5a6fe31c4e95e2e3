<#
.SYNOPSIS
    One Kcopyd measurement for Invoke-Benchmark.ps1, run in a pwsh process of its own.
.DESCRIPTION
    A process per measurement, so the time includes loading the module (Import-Module, JIT, the client's start)
    and the process's peak memory (VmHWM) belongs to this one operation alone. Prints one line of JSON:
    Seconds, JobSeconds (the job's own StartTime to EndTime), PeakKiB, State, IoBackend.
      Copy  Start-RegionCopy -Wait of LengthBytes from Source to each of Destination (comma-separated)
      Zero  Clear-Region -Wait of LengthBytes at offset 0 of Destination
      Jobs  JobCount copy jobs of JobBytes each through the engine's API: Seconds runs from the first submit to
            the end of the last job, since a job rate should not include loading the module
      Resync       New-MirrorDevice over Source (the default leg) and each Destination, then Wait-MirrorDevice
      MirrorWrite  New-MirrorDevice -NoSync over the Destinations, then Start-RegionCopy -Wait from Source into it
#>
param(
    [Parameter(Mandatory)] [ValidateSet('Copy', 'Zero', 'Jobs', 'Resync', 'MirrorWrite')] [string] $Operation,
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $Source,
    [Parameter(Mandatory)] [string] $Destination,
    [Parameter(Mandatory)] [long] $LengthBytes,
    [int] $JobCount = 10000,
    [int] $JobBytes = 64KB
)

$ErrorActionPreference = 'Stop'
# No one watches the bar; -Wait still calls WriteProgress, the host just does not draw it.
$ProgressPreference = 'SilentlyContinue'
$clock = [Diagnostics.Stopwatch]::StartNew()
Import-Module $ModulePath

function Invoke-Jobs {
    # Opens the devices once, submits every job before waiting for any, then waits for all of them.
    $options = [Kcopyd.Engine.Devices.DeviceOpenOptions]
    $from = [Kcopyd.Engine.Devices.LinuxBlockDevice]::Open($Source, $options::ReadOnly)
    $to = [Kcopyd.Engine.Devices.LinuxBlockDevice]::Open($Destination, $options::ReadWrite)
    $client = [Kcopyd.Engine.Copy.CopyClient]::new([Kcopyd.Engine.Copy.CopyClientOptions]::new())
    try {
        $tasks = [Collections.Generic.List[Threading.Tasks.Task]]::new($JobCount)
        $jobs = [Collections.Generic.List[Kcopyd.Engine.Copy.CopyJob]]::new($JobCount)
        $clock.Restart()
        for ($i = 0; $i -lt $JobCount; $i++) {
            # Past the end of the region the jobs wrap around: the same bytes again, so the result is unchanged.
            $offset = ([long]$i * $JobBytes) % $LengthBytes
            $job = $client.Copy([Kcopyd.Engine.Copy.CopyRequest]@{
                    Source            = $from
                    SourceOffsetBytes = $offset
                    Destinations      = [Kcopyd.Engine.Copy.CopyDestination[]]@([Kcopyd.Engine.Copy.CopyDestination]::new($to, $offset))
                    LengthBytes       = $JobBytes
                })
            $jobs.Add($job)
            $tasks.Add($job.WaitAsync())
        }
        [Threading.Tasks.Task]::WaitAll($tasks.ToArray())
        $clock.Stop()
        $notDone = @($jobs | Where-Object State -ne 'Completed')
        [pscustomobject]@{ State = if ($notDone) { "$($notDone.Count) jobs not Completed" } else { 'Completed' }; Job = $null; IoBackend = $client.IoBackend }
    } finally {
        $client.Dispose()
        $from.Dispose()
        $to.Dispose()
    }
}

$result = switch ($Operation) {
    'Copy' {
        $job = Start-RegionCopy -Source $Source -Destination ($Destination -split ',') -Length $LengthBytes -Wait -Confirm:$false
        $clock.Stop()
        [pscustomobject]@{ State = "$($job.State)"; Job = $job; IoBackend = [Kcopyd.Session.KcopydSession]::GetClient('default').IoBackend }
    }
    'Zero' {
        $job = Clear-Region -Path $Destination -Offset 0 -Length $LengthBytes -Wait -Confirm:$false
        $clock.Stop()
        [pscustomobject]@{ State = "$($job.State)"; Job = $job; IoBackend = [Kcopyd.Session.KcopydSession]::GetClient('default').IoBackend }
    }
    'Jobs' { Invoke-Jobs }
    'Resync' {
        New-MirrorDevice bench -Leg (@($Source) + ($Destination -split ',')) -Confirm:$false | Out-Null
        $status = Wait-MirrorDevice bench
        $clock.Stop()
        Remove-MirrorDevice bench -Confirm:$false
        [pscustomobject]@{ State = if ($status.State -eq 'InSync') { 'Completed' } else { "$($status.State)" }; Job = $null; IoBackend = $null }
    }
    'MirrorWrite' {
        $mirror = New-MirrorDevice bench -Leg ($Destination -split ',') -NoSync -Confirm:$false
        $job = Start-RegionCopy -Source $Source -Destination $mirror -Length $LengthBytes -Wait -Confirm:$false
        $clock.Stop()
        Remove-MirrorDevice bench -Confirm:$false
        [pscustomobject]@{ State = "$($job.State)"; Job = $job; IoBackend = [Kcopyd.Session.KcopydSession]::GetClient('default').IoBackend }
    }
}

$peakKiB = [long]((Get-Content /proc/self/status | Where-Object { $_ -like 'VmHWM:*' }) -replace '\D', '')
[pscustomobject]@{
    Seconds    = $clock.Elapsed.TotalSeconds
    JobSeconds = if ($result.Job) { ($result.Job.EndTime - $result.Job.StartTime).TotalSeconds } else { $null }
    PeakKiB    = $peakKiB
    State      = $result.State
    IoBackend  = $result.IoBackend
} | ConvertTo-Json -Compress
