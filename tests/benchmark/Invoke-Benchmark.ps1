#requires -Version 7.4
<#
.SYNOPSIS
    Measures Kcopyd against dd, qemu-img, nbdcopy and blkdiscard on the same loop devices, and writes the table.
.DESCRIPTION
    Attaches loop devices (direct I/O where the kernel allows it) over image files in -Folder and measures, as
    the median of -Runs runs with the tools taking turns:
      copy      one random region device to device: Start-RegionCopy, dd, qemu-img convert, nbdcopy
      fan-out   the same region to three devices: one Start-RegionCopy against three dd runs one after another
      latency   a 64 KiB job from submit to Completed, one after another (median and 99th percentile of 500):
                Start-RegionCopy -Wait through the host against the engine's API in the same pwsh
      jobs      10,000 copy jobs of 64 KiB (jobs per second): through the engine's API from PowerShell, and
                through the host (Start-RegionCopy without -Wait for each, then waiting for all)
      compare   the region against an identical copy: Compare-Region against cmp and qemu-img compare -T none
      sparse    an image file of the region's size that is 90% holes, copied to a new sparse file: Start-RegionCopy
                -Sparse and -DestinationIsZero against nbdcopy and qemu-img convert -S 4k (each file checked for the
                bytes and for what it allocated)
      verify    the copy row again with -Verify (every destination chunk re-read and compared), against the copy alone
      zero      the region zeroed: Clear-Region against blkdiscard -z
      resync    a new mirror of the source and one or two legs brought in sync, against dd to each leg in turn
      mirror    the region written through a 2-leg mirror, against the same region copied 1 to 2 to its legs
      export    nbdcopy into a published 2-leg mirror (Unix socket), against Start-RegionCopy into that mirror, and
                nbdcopy into nbdkit's file plugin serving one leg
      fio       random 64 KiB writes (iodepth 16, direct, libaio) on the mirror's -BlockDevice, against the block
                device of nbdkit's file plugin serving one leg (nbdfuse and losetup, as -BlockDevice does)
      NBD client the region copied out of nbdkit's file plugin serving the source: Start-RegionCopy against nbdcopy
      resume    a copy whose host is killed (SIGKILL) at 50% and started again with its -MapPath, against copying the
                whole region again
      memory    the peak memory of Kcopyd (the pwsh and the host) for the copy above and for one copy of -MemoryCheckGiB
    The cmdlets run in a Kcopyd host of the benchmark's own (KCOPYD_RUNTIME_DIR and KCOPYD_STATE_DIR in a new
    temporary folder), started before the first row and stopped at the end, also when the benchmark fails. The copy
    and fan-out rows also run the same copy through the engine's API in a pwsh with no host, which says what the
    host costs.
    Every run starts from a reset destination and dropped page caches, and is checked afterwards (SHA-256 of the
    destination equals the source's; zeroing compared with /dev/zero), so a fast wrong answer fails the run.
    Prints the table and writes it, with the machine it ran on, to -OutFile. Needs root. Run it through
    ./build.ps1 Bench, which builds the module and installs the other tools first.
#>
[CmdletBinding()]
param(
    [ValidateRange(0.01, 1024)]
    [double] $SizeGiB = 2,

    [ValidateRange(1, 99)]
    [int] $Runs = 3,

    # Where the image files go; the loop devices are only as fast as the filesystem under them.
    [ValidateNotNullOrEmpty()]
    [string] $Folder = '/var/tmp',

    # 0 skips the memory check's large copy.
    [ValidateRange(0, 1024)]
    [double] $MemoryCheckGiB = 8,

    # Anything the reader should know about the run (say, that other work shared the machine).
    [string] $Note,

    # Only these rows (wildcards): copy, fan-out, latency, jobs, compare, sparse, verify, zero, resync, mirror,
    # export, fio, nbd-client, resume, memory. The default runs them all; a partial run still writes -OutFile, so point it
    # elsewhere.
    [string[]] $Rows = @('*'),

    [string] $ModulePath = (Join-Path $PSScriptRoot '../../Kcopyd.psd1'),

    [string] $OutFile = (Join-Path $PSScriptRoot '../../docs/benchmark.md')
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
$ModulePath = (Resolve-Path $ModulePath).Path
$ChildScript = Join-Path $PSScriptRoot 'Measure-Kcopyd.ps1'
$WorkFolder = Join-Path $Folder "kcopyd-bench-$PID"
$Devices = [Collections.Generic.List[object]]::new()
$JobCount = 10000
$JobBytes = 64KB
$LatencyJobCount = 500
# The operations of Measure-Kcopyd.ps1 that run in the host, whose peak memory counts with the pwsh's.
$HostOperations = 'Copy', 'Zero', 'Compare', 'HostJobs', 'Latency', 'Resync', 'MirrorWrite', 'ExportWrite', 'ExportFio'
# The ones timed from before Import-Module (the others time only their jobs).
$WholeOperations = 'Copy', 'EngineCopy', 'Zero', 'Compare', 'Resync', 'MirrorWrite', 'ExportWrite', 'ExportFio'
# nbdkit servers and nbdfuse mounts the benchmark started, stopped at the end also when it fails.
$NbdServers = [Collections.Generic.List[object]]::new()
# Random 64 KiB writes, each block once, with a checksum in each so --verify_only can check them afterwards.
$FioWrite = '--name=bench --rw=randwrite --bs=64k --iodepth=16 --ioengine=libaio --direct=1 --randseed=1 --verify=crc32c --do_verify=0 --verify_state_save=0 --output-format=terse'
# The benchmark's own host: its folder, its process, and how long the first cmdlet took to start it.
$BenchHost = [pscustomobject]@{ Folder = $null; ProcessId = 0; StartSeconds = 0.0; SavedEnvironment = @{} }
$ChunkBytes = 4MB   # dd's block size; regions are whole multiples of it so every tool copies the same bytes

function Invoke-Native {
    # Runs a native command and stops the benchmark when it fails. Takes plain $args so -n and -f reach the command.
    $file, $arguments = $args
    & $file @arguments
    if ($LASTEXITCODE -ne 0) { throw "$file $($arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

function Get-RegionBytes([double] $GiB) {
    [long][Math]::Floor($GiB * 1GB / $ChunkBytes) * $ChunkBytes
}

function Get-SizeText([long] $Bytes) {
    if ($Bytes % 1GB -eq 0) { "$($Bytes / 1GB) GiB" } else { '{0:N0} MiB' -f ($Bytes / 1MB) }
}

# ---- devices ---------------------------------------------------------------------------------------------

function New-BenchDevice([string] $Name, [long] $Bytes) {
    # A loop device exactly the region's size, so the tools that copy whole devices (qemu-img, nbdcopy) copy
    # the same bytes as the ones given a length.
    $image = Join-Path $WorkFolder "$Name.img"
    $file = [IO.File]::Create($image); $file.SetLength($Bytes); $file.Dispose()
    foreach ($attempt in 1..5) {
        # Others attach loop devices on this machine too and may take the free one between find and attach.
        $path = losetup --direct-io=on --find --show $image 2>$null
        if (-not $LASTEXITCODE) { break }
        Start-Sleep -Milliseconds (100 * $attempt)
    }
    if ($LASTEXITCODE) { throw "losetup failed for $image" }
    $device = [pscustomobject]@{ Path = $path; Image = $image; DirectIo = Test-LoopDirectIo $path }
    $Devices.Add($device)
    $device
}

function Test-LoopDirectIo([string] $Path) {
    # losetup only warns when the filesystem refuses direct I/O; the kernel's own flag says what was used.
    (Get-Content "/sys/block/$(Split-Path $Path -Leaf)/loop/dio" -ErrorAction Ignore) -eq '1'
}

function Remove-BenchDevices {
    foreach ($device in $Devices) {
        losetup -d $device.Path 2>$null
        Remove-Item $device.Image -Force -ErrorAction Ignore
    }
    $Devices.Clear()
}

# ---- nbdkit ------------------------------------------------------------------------------------------------

function Start-NbdkitFile([string] $Path, [switch] $ReadOnly) {
    # nbdkit's file plugin serving $Path on a Unix socket of its own; it forks into the background once it listens.
    $name = "nbdkit-$($NbdServers.Count)"
    $socket = Join-Path $WorkFolder "$name.sock"
    $pidFile = Join-Path $WorkFolder "$name.pid"
    Invoke-Native nbdkit -U $socket -P $pidFile $(if ($ReadOnly) { '-r' }) file "file=$Path"
    # The background nbdkit writes its pid file a moment after the one started here has returned.
    $deadline = [DateTime]::UtcNow.AddSeconds(20)
    while (-not ((Test-Path $pidFile) -and (Get-Content $pidFile -ErrorAction Ignore))) {
        if ([DateTime]::UtcNow -gt $deadline) { throw "nbdkit wrote no pid file $pidFile" }
        Start-Sleep -Milliseconds 20
    }
    $server = [pscustomobject]@{ Kind = 'nbdkit'; ProcessId = [int](Get-Content $pidFile); Uri = "nbd+unix:///?socket=$socket" }
    $NbdServers.Add($server)
    $server
}

function New-NbdkitFileDevice([string] $Path) {
    # The block device of nbdkit's file plugin serving $Path: nbdfuse makes it a file, losetup a loop device, with
    # direct I/O so every request reaches nbdkit, as Publish-MirrorDevice -BlockDevice does for a mirror.
    $mount = Join-Path $WorkFolder "nbdfuse-$($NbdServers.Count)"
    New-Item -ItemType Directory $mount | Out-Null
    $disk = Join-Path $mount 'disk'
    $start = [Diagnostics.ProcessStartInfo]::new('nbdfuse')
    foreach ($arg in $disk, '[', 'nbdkit', 'file', "file=$Path", ']') { $start.ArgumentList.Add($arg) }
    $server = [pscustomobject]@{ Kind = 'nbdfuse'; Process = [Diagnostics.Process]::Start($start); Mount = $mount; Device = $null }
    $NbdServers.Add($server)
    $deadline = [DateTime]::UtcNow.AddSeconds(20)
    while (-not (Test-Path $disk)) {
        if ($server.Process.HasExited -or [DateTime]::UtcNow -gt $deadline) { throw "nbdfuse did not bring up $disk" }
        Start-Sleep -Milliseconds 20
    }
    $server.Device = losetup --find --show --direct-io=on $disk
    if ($LASTEXITCODE) { throw "losetup failed for $disk" }
    $server
}

function Stop-NbdServer($Server) {
    # Only what the benchmark started: the pid nbdkit wrote for it, the nbdfuse process it started itself.
    if (-not $NbdServers.Remove($Server)) { return }
    if ($Server.Kind -eq 'nbdkit') {
        kill -TERM $Server.ProcessId 2>$null
        if (-not (Wait-ProcessExit $Server.ProcessId 10)) { Write-Warning "nbdkit $($Server.ProcessId) did not stop." }
        return
    }
    if ($Server.Device) { losetup -d $Server.Device 2>$null }
    fusermount3 -u $Server.Mount 2>$null
    if (-not $Server.Process.WaitForExit(10000)) { $Server.Process.Kill() }
    Remove-Item $Server.Mount -Force -ErrorAction Ignore
}

function Stop-NbdServers {
    foreach ($server in @($NbdServers)) { Stop-NbdServer $server }
}

function Get-SpaceShortfall([long] $Bytes, [string] $Purpose) {
    # Says why there is not room for $Bytes of images (and 1 GiB to spare), or nothing when there is.
    $free = [IO.DriveInfo]::new($WorkFolder).AvailableFreeSpace
    if ($free -lt $Bytes + 1GB) {
        "$Purpose needs $(Get-SizeText $Bytes) and 1 GiB to spare in $Folder; $('{0:N1}' -f ($free / 1GB)) GiB is free."
    }
}

function Write-RandomData([string] $Path, [long] $Bytes) {
    # Random, so no tool can skip zero blocks or compress its way to a better number.
    Invoke-Native dd if=/dev/urandom of=$Path bs=$ChunkBytes "count=$($Bytes / $ChunkBytes)" iflag=fullblock oflag=direct status=none
}

function Copy-Untimed([string] $From, [string] $To, [long] $Bytes) {
    Invoke-Native dd if=$From of=$To bs=$ChunkBytes count=$Bytes iflag='direct,count_bytes' oflag=direct status=none
}

function Clear-Untimed([string[]] $Paths) {
    # Resets a destination before a copy, so a tool that wrote nothing could not pass the check with the last
    # tool's bytes. On loop-over-ext4 this is a quick unwritten-extent change, the same start for every tool.
    foreach ($path in $Paths) { Invoke-Native blkdiscard -z $path }
}

function Clear-PageCache {
    # Nothing the previous run read or wrote is left in memory for the next tool to find.
    Invoke-Native bash -c 'sync; echo 3 > /proc/sys/vm/drop_caches'
}

# ---- checks -----------------------------------------------------------------------------------------------

function Get-BenchSha256([string] $Path, [long] $Bytes) {
    # Reads with O_DIRECT, so checking a copy does not warm the page cache for the next run.
    $line = bash -c "dd if='$Path' bs=$ChunkBytes count=$Bytes iflag=direct,count_bytes status=none | sha256sum"
    if ($LASTEXITCODE) { throw "Hashing $Path failed" }
    ($line -split ' ')[0]
}

function Assert-SameAsSource([string[]] $Paths, [long] $Bytes, [string] $SourceHash, [string] $Tool) {
    foreach ($path in $Paths) {
        $hash = Get-BenchSha256 $path $Bytes
        if ($hash -ne $SourceHash) { throw "$Tool left $path different from the source: SHA-256 $hash, expected $SourceHash" }
    }
}

function Assert-Zeroed([string] $Path, [long] $Bytes, [string] $Tool) {
    cmp -s -n $Bytes /dev/zero $Path
    if ($LASTEXITCODE) { throw "$Tool left $Path with bytes that are not zero in the first $Bytes" }
}

# ---- the host ---------------------------------------------------------------------------------------------

function Invoke-ModuleCommand([string] $Command) {
    # A short command in a pwsh of its own with the module loaded.
    $output = dotnet pwsh -NoProfile -NonInteractive -Command "`$ErrorActionPreference = 'Stop'; Import-Module '$ModulePath'; $Command"
    if ($LASTEXITCODE) { throw "'$Command' failed: $output" }
}

function Start-BenchHost {
    # A host of the benchmark's own, so no other host's jobs, mirrors or settings (its job history) play a part.
    # Every measurement is a child pwsh, which inherits these variables. The host is started here, before the
    # first row, as a user finds it running after the first cmdlet; no timed run includes its start.
    $BenchHost.Folder = [IO.Directory]::CreateTempSubdirectory('kcopyd-bench-host-').FullName
    foreach ($name in 'KCOPYD_RUNTIME_DIR', 'KCOPYD_STATE_DIR') { $BenchHost.SavedEnvironment[$name] = [Environment]::GetEnvironmentVariable($name) }
    # Not made here: the host makes both as private as it requires (0700).
    $env:KCOPYD_RUNTIME_DIR = Join-Path $BenchHost.Folder 'run'
    $env:KCOPYD_STATE_DIR = Join-Path $BenchHost.Folder 'state'
    # Then one copy and one zeroing, untimed, on two small image files of its own: a host that has served its
    # users has run both before (the first of each compiles its code path in the host).
    $images = foreach ($name in 'warm-source', 'warm-target') {
        $image = Join-Path $BenchHost.Folder "$name.img"
        $file = [IO.File]::Create($image); $file.SetLength(4MB); $file.Dispose()
        $image
    }
    $output = dotnet pwsh -NoProfile -NonInteractive -File $ChildScript -Operation HostStart -ModulePath $ModulePath `
        -Source $images[0] -Destination $images[1] -LengthBytes 4MB
    if ($LASTEXITCODE) { throw "Starting the Kcopyd host failed: $output" }
    $started = @($output)[-1] | ConvertFrom-Json
    $BenchHost.ProcessId = $started.HostProcessId
    $BenchHost.StartSeconds = $started.Seconds
    Remove-Item $images
    Write-Host ('Kcopyd host {0} on {1}: the first cmdlet took {2:N2} s, with the host''s start' -f $BenchHost.ProcessId, $env:KCOPYD_RUNTIME_DIR, $BenchHost.StartSeconds)
}

function Stop-BenchHost {
    # Stop-KcopydHost -Force; a host that does not go within 10 s is sent SIGTERM (it is ours: its pid came from it).
    if (-not $BenchHost.Folder) { return }
    try {
        if (Test-Path (Join-Path $env:KCOPYD_RUNTIME_DIR 'control.sock')) {
            try { Invoke-ModuleCommand 'Stop-KcopydHost -Force -Confirm:$false' }
            catch { Write-Warning "Stop-KcopydHost failed: $_" }
        }
        if ($BenchHost.ProcessId) {
            if (-not (Wait-ProcessExit $BenchHost.ProcessId 10)) {
                Write-Warning "Kcopyd host $($BenchHost.ProcessId) did not stop; sending it SIGTERM."
                kill -TERM $BenchHost.ProcessId 2>$null
                if (-not (Wait-ProcessExit $BenchHost.ProcessId 10)) { Write-Warning "Kcopyd host $($BenchHost.ProcessId) is still running." }
            }
        }
        $log = Join-Path $env:KCOPYD_RUNTIME_DIR 'host.log'
        if ($script:Failed -and (Test-Path $log)) {
            Write-Warning "The end of the host's log ($log):"
            Get-Content $log -Tail 20 | ForEach-Object { Write-Warning $_ }
        }
    } finally {
        foreach ($name in $BenchHost.SavedEnvironment.Keys) { [Environment]::SetEnvironmentVariable($name, $BenchHost.SavedEnvironment[$name]) }
        Remove-Item $BenchHost.Folder -Recurse -Force -ErrorAction Ignore
        $BenchHost.Folder = $null
    }
}

function Wait-ProcessExit([int] $ProcessId, [int] $Seconds) {
    $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
    while (Test-Path "/proc/$ProcessId") {
        if ([DateTime]::UtcNow -gt $deadline) { return $false }
        Start-Sleep -Milliseconds 100
    }
    $true
}

function Reset-PeakKiB([int] $ProcessId) {
    # Linux's clear_refs: 5 sets the high-water mark (VmHWM) to the resident set it has now. Written in place, as
    # echo does (a proc file cannot be truncated, which Set-Content would try).
    $file = [IO.FileStream]::new("/proc/$ProcessId/clear_refs", [IO.FileMode]::Open, [IO.FileAccess]::Write)
    try { $file.Write([byte[]][char[]]'5', 0, 1) } finally { $file.Dispose() }
}

function Get-PeakKiB([int] $ProcessId) {
    [long]((Get-Content "/proc/$ProcessId/status" | Where-Object { $_ -like 'VmHWM:*' }) -replace '\D', '')
}

# ---- measuring --------------------------------------------------------------------------------------------

function Measure-Native([string] $Command) {
    # GNU time gives the peak memory of the command (and of the processes it waits for); the clock is ours, so
    # every tool is timed the same way.
    $peakFile = Join-Path $WorkFolder 'peak.txt'
    $clock = [Diagnostics.Stopwatch]::StartNew()
    /usr/bin/time -f '%M' -o $peakFile bash -c $Command
    $clock.Stop()
    if ($LASTEXITCODE) { throw "'$Command' failed with exit code $LASTEXITCODE" }
    [pscustomobject]@{ Seconds = $clock.Elapsed.TotalSeconds; PeakKiB = [long](Get-Content $peakFile -Tail 1) }
}

function Measure-Kcopyd([string] $Operation, [string] $Source, [string[]] $Destination, [long] $Bytes, [int] $Jobs = $JobCount, [string] $Fio, [string[]] $CopyOptions) {
    # A pwsh of its own per measurement: loading the module is part of the time, and the pwsh's peak memory is
    # this operation's alone. The child's own clock leaves out the start of pwsh, which the process time shows.
    # The host lives across measurements, so its peak is reset to its resident set just before the child starts
    # (clear_refs 5) and read when it ends: the host's peak during this operation, counted with the pwsh's.
    $arguments = @('-Operation', $Operation, '-ModulePath', $ModulePath, '-Destination', ($Destination -join ','),
        '-LengthBytes', $Bytes, '-JobCount', $Jobs, '-JobBytes', $JobBytes)
    if ($Source) { $arguments += '-Source', $Source }
    if ($Fio) { $arguments += '-FioArguments', $Fio }
    if ($CopyOptions) { $arguments += '-CopyOptions', ($CopyOptions -join ',') }
    $inHost = $Operation -in $HostOperations
    if ($inHost) { Reset-PeakKiB $BenchHost.ProcessId }
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $output = dotnet pwsh -NoProfile -NonInteractive -File $ChildScript @arguments
    $clock.Stop()
    if ($LASTEXITCODE) { throw "Kcopyd $Operation failed: $output" }
    $result = @($output)[-1] | ConvertFrom-Json
    if ($result.State -ne 'Completed') { throw "Kcopyd $Operation ended $($result.State)" }
    $hostKiB = $null
    if ($inHost) {
        if ($result.HostProcessId -ne $BenchHost.ProcessId) {
            throw "Kcopyd $Operation ran in host $($result.HostProcessId), not in the benchmark's host $($BenchHost.ProcessId) (it went away?)"
        }
        $hostKiB = Get-PeakKiB $BenchHost.ProcessId
    }
    [pscustomobject]@{
        Seconds        = $result.Seconds
        JobSeconds     = $result.JobSeconds
        MedianSeconds  = $result.MedianSeconds
        P99Seconds     = $result.P99Seconds
        # Both peaks, added: at most what both held at one moment.
        PeakKiB        = $result.PeakKiB + [long]$hostKiB
        HostPeakKiB    = $hostKiB
        Operation      = $Operation
        ProcessSeconds = $clock.Elapsed.TotalSeconds
        IoBackend      = $result.IoBackend
    }
}

function New-Contender {
    # One tool in one row. Prepare, Measure and Verify are called with the contender itself, so they need no
    # closures (which would not see this script's functions).
    param(
        [string] $Row, [string] $Tool, [long] $Bytes, [string] $Source, [string[]] $Targets, [string] $SourceHash,
        # What the Ratio divides by: by default the tools that are not Kcopyd's.
        [bool] $Reference = ($Tool -notlike 'Kcopyd*'),
        # What the tool is run with, when its Measure and Verify need more than the devices (fio's options).
        [string] $Options,
        [scriptblock] $Prepare = { param($c) Clear-Untimed $c.Targets },
        [scriptblock] $Measure,
        [scriptblock] $Verify = { param($c) Assert-SameAsSource $c.Targets $c.Bytes $c.SourceHash $c.Tool }
    )
    [pscustomobject]@{
        Row = $Row; Tool = $Tool; Bytes = $Bytes; Source = $Source; Targets = $Targets; SourceHash = $SourceHash; Reference = $Reference
        Prepare = $Prepare; Measure = $Measure; Verify = $Verify; Results = [Collections.Generic.List[object]]::new()
        Options = $Options; Device = $null
    }
}

function Invoke-Row([object[]] $Contenders, [int] $Times = $Runs) {
    # The tools take turns within each run, so a burst of other work on the machine spreads over all of them.
    foreach ($run in 1..$Times) {
        foreach ($c in $Contenders) {
            & $c.Prepare $c | Out-Null
            Clear-PageCache
            $result = & $c.Measure $c
            & $c.Verify $c | Out-Null
            $c.Results.Add($result)
            Write-Host ('{0,-24} {1,-42} run {2}/{3}: {4,8:N3} s, peak {5:N0} MiB' -f $c.Row, $c.Tool, $run, $Times, $result.Seconds, ($result.PeakKiB / 1KB))
        }
    }
    $Contenders
}

function Get-Median([double[]] $Values) {
    $sorted = @($Values | Sort-Object)
    $middle = [int][Math]::Floor($sorted.Count / 2)
    if ($sorted.Count % 2) { $sorted[$middle] } else { ($sorted[$middle - 1] + $sorted[$middle]) / 2 }
}

# ---- the rows ---------------------------------------------------------------------------------------------

function Get-CopyContenders([string] $Source, [string] $Target, [long] $Bytes, [string] $SourceHash) {
    $common = @{ Row = "copy $(Get-SizeText $Bytes), 1 to 1"; Bytes = $Bytes; Source = $Source; Targets = $Target; SourceHash = $SourceHash }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy -Wait' -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Tool 'Kcopyd engine API in pwsh, no host' -Measure { param($c) Measure-Kcopyd EngineCopy $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Tool 'dd bs=4M iflag=direct oflag=direct' -Measure {
        param($c) Measure-Native "dd if=$($c.Source) of=$($c.Targets[0]) bs=4M count=$($c.Bytes / 4MB) iflag=direct oflag=direct status=none"
    }
    New-Contender @common -Tool 'qemu-img convert -t none -T none -W -m 16' -Measure {
        param($c) Measure-Native "qemu-img convert -n -f raw -O raw -t none -T none -W -m 16 $($c.Source) $($c.Targets[0])"
    }
    # nbdcopy reads and writes local devices through the page cache; --flush makes it wait until the data is on
    # the destination device, as the O_DIRECT tools have done when they exit.
    New-Contender @common -Tool 'nbdcopy --flush' -Measure { param($c) Measure-Native "nbdcopy --flush $($c.Source) $($c.Targets[0])" }
}

function Get-FanOutContenders([string] $Source, [string[]] $Targets, [long] $Bytes, [string] $SourceHash) {
    $common = @{ Row = "fan-out $(Get-SizeText $Bytes), 1 to 3"; Bytes = $Bytes; Source = $Source; Targets = $Targets; SourceHash = $SourceHash }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy -Wait, 3 dest.' -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Tool 'Kcopyd engine API, 3 dest., no host' -Measure { param($c) Measure-Kcopyd EngineCopy $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Tool 'dd x3, one after another' -Measure {
        param($c)
        Measure-Native (($c.Targets | ForEach-Object { "dd if=$($c.Source) of=$_ bs=4M count=$($c.Bytes / 4MB) iflag=direct oflag=direct status=none" }) -join ' && ')
    }
}

function Get-LatencyContenders([string] $Source, [string] $Target, [long] $Bytes) {
    # What the host adds to one small job: each timed alone, from a pwsh that already ran a few.
    $checked = [Math]::Min($Bytes, [long]$LatencyJobCount * $JobBytes)
    $common = @{
        Row = "$($JobBytes / 1KB) KiB job, submit to Completed"; Bytes = $checked; Source = $Source; Targets = $Target
        SourceHash = Get-BenchSha256 $Source $checked
    }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy -Wait' -Measure { param($c) Measure-Kcopyd Latency $c.Source $c.Targets $c.Bytes -Jobs $LatencyJobCount }
    New-Contender @common -Tool 'Kcopyd engine API from pwsh, no host' -Reference $true `
        -Measure { param($c) Measure-Kcopyd EngineLatency $c.Source $c.Targets $c.Bytes -Jobs $LatencyJobCount }
}

function Get-JobsContenders([string] $Source, [string] $Target, [long] $Bytes) {
    # Past the end of a small region the jobs wrap around, so the check covers what they wrote.
    $checked = [Math]::Min($Bytes, [long]$JobCount * $JobBytes)
    $common = @{
        Row = "$('{0:N0}' -f $JobCount) jobs of $($JobBytes / 1KB) KiB"; Bytes = $checked; Source = $Source; Targets = $Target
        SourceHash = Get-BenchSha256 $Source $checked
    }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy -Force, no -Wait' -Measure { param($c) Measure-Kcopyd HostJobs $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Tool 'Kcopyd engine API from pwsh, no host' -Reference $true `
        -Measure { param($c) Measure-Kcopyd Jobs $c.Source $c.Targets $c.Bytes }
}

function Get-CompareContenders([string] $Source, [string] $Target, [long] $Bytes) {
    # The check after a copy: both regions read whole, and nothing found. The copy is made once, untimed; a tool
    # that finds a difference fails its run (cmp and qemu-img compare exit non-zero, Compare-Region's state says so).
    Copy-Untimed $Source $Target $Bytes
    $common = @{
        Row = "compare $(Get-SizeText $Bytes), identical"; Bytes = $Bytes; Source = $Source; Targets = $Target
        Prepare = { param($c) }; Verify = { param($c) }
    }
    New-Contender @common -Tool 'Kcopyd Compare-Region' -Measure { param($c) Measure-Kcopyd Compare $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Tool 'cmp' -Measure { param($c) Measure-Native "cmp -n $($c.Bytes) $($c.Source) $($c.Targets[0])" }
    # Whole devices: qemu-img compare takes no region, and the benchmark's devices are the region's size.
    New-Contender @common -Tool 'qemu-img compare -T none' -Measure { param($c) Measure-Native "qemu-img compare -q -f raw -F raw -T none $($c.Source) $($c.Targets[0])" }
}

function New-SparseImage([string] $Path, [long] $Bytes) {
    # 90% holes: one random MiB at the start of every 10 MiB (and the rest a hole), as a thin VM image has.
    $file = [IO.File]::Create($Path); $file.SetLength($Bytes); $file.Dispose()
    $random = [Random]::new(1701)
    $data = [byte[]]::new(1MB)
    $stream = [IO.File]::OpenWrite($Path)
    try {
        for ([long]$offset = 0; $offset -lt $Bytes; $offset += 10MB) {
            $random.NextBytes($data)
            $stream.Position = $offset
            $stream.Write($data, 0, [Math]::Min(1MB, $Bytes - $offset))
        }
    } finally { $stream.Dispose() }
}

function Get-AllocatedBytes([string] $Path) {
    $blocks, $blockBytes = (stat -c '%b %B' $Path) -split ' '
    [long]$blocks * [long]$blockBytes
}

function Get-SparseContenders([long] $Bytes) {
    # Image file to image file: the destination is a new, empty sparse file before each run, which every tool
    # must leave equal to the source and about as thin (a tool that wrote the holes out as zeros fails its run).
    $source = Join-Path $WorkFolder 'sparse-source.img'
    $target = Join-Path $WorkFolder 'sparse-target.img'
    New-SparseImage $source $Bytes
    $common = @{
        Row = "sparse $(Get-SizeText $Bytes), 90% holes"; Bytes = $Bytes; Source = $source; Targets = $target; SourceHash = Get-BenchSha256 $source $Bytes
        Prepare = { param($c) Remove-Item $c.Targets[0] -ErrorAction Ignore; $f = [IO.File]::Create($c.Targets[0]); $f.SetLength($c.Bytes); $f.Dispose() }
        Verify = {
            param($c)
            Assert-SameAsSource $c.Targets $c.Bytes $c.SourceHash $c.Tool
            $allocated = Get-AllocatedBytes $c.Targets[0]
            if ($allocated -gt 0.2 * $c.Bytes) { throw "$($c.Tool) allocated $allocated bytes of $($c.Targets[0]) for a source that is 90% holes" }
        }
    }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy -Sparse' -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes -CopyOptions Sparse }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy -DestinationIsZero' -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes -CopyOptions DestinationIsZero }
    New-Contender @common -Tool 'nbdcopy --flush' -Measure { param($c) Measure-Native "nbdcopy --flush $($c.Source) $($c.Targets[0])" }
    New-Contender @common -Tool 'nbdcopy --flush --destination-is-zero' -Measure { param($c) Measure-Native "nbdcopy --flush --destination-is-zero $($c.Source) $($c.Targets[0])" }
    # -n: into the existing empty file, as the others; without --target-is-zero it zeroes the holes itself.
    New-Contender @common -Tool 'qemu-img convert -n -S 4k -t none' -Measure {
        param($c) Measure-Native "qemu-img convert -n -S 4k -f raw -O raw -t none $($c.Source) $($c.Targets[0])"
    }
    New-Contender @common -Tool 'qemu-img convert -n -S 4k -t none --target-is-zero' -Measure {
        param($c) Measure-Native "qemu-img convert -n -S 4k -f raw -O raw -t none --target-is-zero $($c.Source) $($c.Targets[0])"
    }
}

function Get-VerifyContenders([string] $Source, [string] $Target, [long] $Bytes, [string] $SourceHash) {
    # What -Verify costs: it reads every destination chunk back (O_DIRECT) and compares it, so twice the reads.
    $common = @{ Row = "copy $(Get-SizeText $Bytes) -Verify"; Bytes = $Bytes; Source = $Source; Targets = $Target; SourceHash = $SourceHash }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy -Verify' -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes -CopyOptions Verify }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy, no -Verify' -Reference $true -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes }
}

function Get-ZeroContenders([string] $Source, [string] $Target, [long] $Bytes) {
    $common = @{
        Row = "zero $(Get-SizeText $Bytes)"; Bytes = $Bytes; Source = $Source; Targets = $Target
        # Random data back on the device first: zeroing what is already zero would say nothing.
        Prepare = { param($c) Copy-Untimed $c.Source $c.Targets[0] $c.Bytes }
        Verify = { param($c) Assert-Zeroed $c.Targets[0] $c.Bytes $c.Tool }
    }
    New-Contender @common -Tool 'Kcopyd Clear-Region -Wait' -Measure { param($c) Measure-Kcopyd Zero $null $c.Targets $c.Bytes }
    New-Contender @common -Tool 'blkdiscard -z' -Measure { param($c) Measure-Native "blkdiscard -z -l $($c.Bytes) $($c.Targets[0])" }
}

function Get-ResyncContenders([string] $Source, [string[]] $Legs, [long] $Bytes, [string] $SourceHash) {
    # The source is the mirror's default leg: recovery copies it to the others, as dd does here one after another.
    $common = @{ Row = "resync $(Get-SizeText $Bytes), $($Legs.Count + 1) legs"; Bytes = $Bytes; Source = $Source; Targets = $Legs; SourceHash = $SourceHash }
    New-Contender @common -Tool 'Kcopyd New-/Wait-MirrorDevice' -Measure { param($c) Measure-Kcopyd Resync $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Tool "dd x$($Legs.Count), one after another" -Measure {
        param($c)
        Measure-Native (($c.Targets | ForEach-Object { "dd if=$($c.Source) of=$_ bs=4M count=$($c.Bytes / 4MB) iflag=direct oflag=direct status=none" }) -join ' && ')
    }
}

function Get-MirrorWriteContenders([string] $Source, [string[]] $Legs, [long] $Bytes, [string] $SourceHash) {
    # What the mirror itself costs a writer: the same Start-RegionCopy into a 2-leg mirror, and to its two legs as
    # one copy of 1 to 2, which also reads the region once and writes it twice.
    $common = @{ Row = "write $(Get-SizeText $Bytes) via 2-leg mirror"; Bytes = $Bytes; Source = $Source; SourceHash = $SourceHash; Targets = $Legs }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy into the mirror' -Measure { param($c) Measure-Kcopyd MirrorWrite $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy 1 to 2, the same legs' -Reference $true -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes }
}

function Get-ExportContenders([string] $Source, [string[]] $Legs, [long] $Bytes, [string] $SourceHash) {
    # What the NBD export costs a writer: nbdcopy into the published mirror against Start-RegionCopy into it; and
    # nbdcopy into nbdkit's file plugin serving one leg, to show what another NBD server makes of the same copy.
    $common = @{ Row = "nbdcopy $(Get-SizeText $Bytes) into 2-leg mirror"; Bytes = $Bytes; Source = $Source; SourceHash = $SourceHash; Targets = $Legs }
    New-Contender @common -Tool 'Kcopyd nbdcopy into Publish-MirrorDevice' -Measure { param($c) Measure-Kcopyd ExportWrite $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy into the mirror' -Reference $true -Measure { param($c) Measure-Kcopyd MirrorWrite $c.Source $c.Targets $c.Bytes }
    $common.Targets = $Legs[0]
    New-Contender @common -Tool 'nbdcopy into nbdkit file, one leg' -Reference $false -Measure {
        param($c) Measure-Native "nbdkit -U - file file=$($c.Targets[0]) --run 'nbdcopy --flush $($c.Source) `"`$uri`"'"
    }
}

function Get-FioContenders([string[]] $Legs, [long] $Bytes) {
    # Random writes from the kernel's side: fio on the mirror's block device and on nbdkit's, each through nbdfuse
    # and a loop device. fio puts a checksum in every block; --verify_only reads them back from the legs themselves.
    $fio = "$FioWrite --size=$Bytes"
    $common = @{
        Row = 'fio randwrite 64 KiB, iodepth 16'; Bytes = $Bytes; Targets = $Legs; Options = $fio
        Verify = { param($c) foreach ($leg in $c.Targets) { Invoke-Native fio ($c.Options -split ' ') --verify_only "--filename=$leg" | Out-Null } }
    }
    New-Contender @common -Tool 'Kcopyd fio on Publish-MirrorDevice -BlockDevice' -Measure { param($c) Measure-Kcopyd ExportFio $null $c.Targets $c.Bytes -Fio $c.Options }
    $common.Targets = $Legs[0]
    $common.Prepare = { param($c) Clear-Untimed $c.Targets; $c.Device = New-NbdkitFileDevice $c.Targets[0] }
    $common.Verify = {
        param($c)
        Stop-NbdServer $c.Device
        Invoke-Native fio ($c.Options -split ' ') --verify_only "--filename=$($c.Targets[0])" | Out-Null
    }
    New-Contender @common -Tool 'fio on nbdkit file, one leg (nbdfuse, losetup)' -Measure {
        param($c) Measure-Native "fio $($c.Options) --filename=$($c.Device.Device) > /dev/null"
    }
}

function Get-NbdClientContenders([string] $Uri, [string] $Target, [long] $Bytes, [string] $SourceHash) {
    # Kcopyd's NBD client against nbdcopy, both reading the source from the same nbdkit server.
    $common = @{ Row = "copy $(Get-SizeText $Bytes) from nbdkit file"; Bytes = $Bytes; Source = $Uri; Targets = $Target; SourceHash = $SourceHash }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy -Source nbd+unix' -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Tool 'nbdcopy --flush' -Measure { param($c) Measure-Native "nbdcopy --flush '$($c.Source)' $($c.Targets[0])" }
}

function Get-ResumeContenders([string] $Source, [string] $Target, [long] $Bytes, [string] $SourceHash) {
    # What -MapPath saves: a copy whose host was killed (SIGKILL) at 50% and started again with its map, against
    # copying the whole region again. The plain copy goes first, so the host restarted by the kill is warmed up
    # (Restart-ResumeHost) before the resume runs in it.
    $common = @{ Row = "resume $(Get-SizeText $Bytes) after a kill at 50%"; Bytes = $Bytes; Source = $Source; Targets = $Target; SourceHash = $SourceHash }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy, all again' -Reference $true -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Tool 'Kcopyd Start-RegionCopy -MapPath, resumed' -Options (Join-Path $WorkFolder 'resume.map') -Prepare {
        param($c)
        Clear-Untimed $c.Targets
        Remove-Item $c.Options -ErrorAction Ignore
        Stop-CopyAtHalf $c.Source $c.Targets[0] $c.Bytes $c.Options
    } -Measure { param($c) Measure-ResumedCopy $c.Source $c.Targets[0] $c.Bytes $c.Options }
}

function Stop-CopyAtHalf([string] $Source, [string] $Target, [long] $Bytes, [string] $Map) {
    # The copy runs at a quarter of the region a second, so the kill lands at 50% after about 2 s; then a new host.
    $command = "`$ErrorActionPreference = 'Stop'; Import-Module '$ModulePath'; " +
        "`$job = Start-RegionCopy '$Source' '$Target' -Length $Bytes -MapPath '$Map' -BytesPerSecond $([long]($Bytes / 4)) -Confirm:`$false; " +
        "do { Start-Sleep -Milliseconds 20 } until ((Get-CopyJob -Id `$job.Id).PercentComplete -ge 50); (Get-KcopydHost).ProcessId"
    $output = dotnet pwsh -NoProfile -NonInteractive -Command $command
    if ($LASTEXITCODE) { throw "The copy to kill at 50% failed: $output" }
    $killed = [int]@($output)[-1]
    if ($killed -ne $BenchHost.ProcessId) { throw "The copy to kill ran in host $killed, not in the benchmark's host $($BenchHost.ProcessId)" }
    kill -KILL $killed
    if (-not (Wait-ProcessExit $killed 20)) { throw "Kcopyd host $killed did not die of SIGKILL" }
    Restart-ResumeHost
}

function Restart-ResumeHost {
    # As Start-BenchHost: the next cmdlet starts the host, then an untimed copy and zeroing warm it up.
    $images = foreach ($name in 'warm-source', 'warm-target') {
        $image = Join-Path $WorkFolder "resume-$name.img"
        $file = [IO.File]::Create($image); $file.SetLength(4MB); $file.Dispose()
        $image
    }
    $output = dotnet pwsh -NoProfile -NonInteractive -File $ChildScript -Operation HostStart -ModulePath $ModulePath `
        -Source $images[0] -Destination $images[1] -LengthBytes 4MB
    if ($LASTEXITCODE) { throw "Starting the Kcopyd host after the kill failed: $output" }
    $BenchHost.ProcessId = (@($output)[-1] | ConvertFrom-Json).HostProcessId
    Remove-Item $images
}

function Measure-ResumedCopy([string] $Source, [string] $Target, [long] $Bytes, [string] $Map) {
    # As Measure-Kcopyd's Copy, with the map: Seconds from before Import-Module, JobSeconds the job's own.
    $script = "`$ProgressPreference = 'SilentlyContinue'; `$clock = [Diagnostics.Stopwatch]::StartNew(); Import-Module '$ModulePath'; " +
        "`$job = Start-RegionCopy '$Source' '$Target' -Length $Bytes -MapPath '$Map' -Wait -Confirm:`$false; `$clock.Stop(); " +
        "`$peak = [long]((Get-Content /proc/self/status | Where-Object { `$_ -like 'VmHWM:*' }) -replace '\D', ''); " +
        "[pscustomobject]@{ Seconds = `$clock.Elapsed.TotalSeconds; JobSeconds = (`$job.EndTime - `$job.StartTime).TotalSeconds; PeakKiB = `$peak; " +
        "State = `"`$(`$job.State)`"; BytesFromMap = `$job.BytesFromMap; HostProcessId = (Get-KcopydHost).ProcessId } | ConvertTo-Json -Compress"
    Reset-PeakKiB $BenchHost.ProcessId
    $output = dotnet pwsh -NoProfile -NonInteractive -Command $script
    if ($LASTEXITCODE) { throw "The resumed copy failed: $output" }
    $result = @($output)[-1] | ConvertFrom-Json
    if ($result.State -ne 'Completed') { throw "The resumed copy ended $($result.State)" }
    if ($result.BytesFromMap -lt $Bytes / 4) { throw "The resumed copy took only $($result.BytesFromMap) bytes from the map of a copy killed at 50%" }
    $hostKiB = Get-PeakKiB $BenchHost.ProcessId
    Write-Host ('  resumed with {0:N0} MiB of {1:N0} MiB from the map' -f ($result.BytesFromMap / 1MB), ($Bytes / 1MB))
    [pscustomobject]@{
        Seconds = $result.Seconds; JobSeconds = $result.JobSeconds; PeakKiB = $result.PeakKiB + $hostKiB; HostPeakKiB = $hostKiB
        Operation = 'Resume'; ProcessSeconds = $null; IoBackend = $null; MedianSeconds = $null; P99Seconds = $null
    }
}

function Invoke-NbdClientRow([string] $Source, [string] $Target, [long] $Bytes, [string] $SourceHash) {
    # One nbdkit serves the source, read-only, to every run of the row.
    $server = Start-NbdkitFile $Source -ReadOnly
    try { Invoke-Row (Get-NbdClientContenders $server.Uri $Target $Bytes $SourceHash) }
    finally { Stop-NbdServer $server }
}

function Measure-LargeCopy([long] $Bytes, [long] $SmallBytes) {
    # Once, on devices of its own: the other rows' images are gone by now, so their space is free again. The
    # copy of the rows' size runs again just before, on the same host: what the host keeps resident grows over
    # the rows before (its heap, its page pools), so the two peaks are compared with the host in one state.
    $source = New-BenchDevice 'large-source' $Bytes
    $target = New-BenchDevice 'large-target' $Bytes
    Write-RandomData $source.Path $Bytes
    foreach ($size in $SmallBytes, $Bytes) {
        $contender = New-Contender -Row 'peak memory' -Tool "Kcopyd copy $(Get-SizeText $size)" -Bytes $size -Source $source.Path `
            -Targets $target.Path -SourceHash (Get-BenchSha256 $source.Path $size) -Prepare {} `
            -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes }
        Invoke-Row $contender -Times 1
    }
}

# ---- the table --------------------------------------------------------------------------------------------

function Get-Measured($Contender, [string] $Name) {
    # The median of one measured value over the contender's runs; null when its runs do not have it.
    $first = $Contender.Results[0]
    if ($first.PSObject.Properties[$Name] -and $null -ne $first.$Name) { Get-Median @($Contender.Results.$Name) }
}

function Get-Seconds($Contender) {
    # What a contender's Ratio compares: for the latency row the median job, otherwise the whole run.
    $median = Get-Measured $Contender 'MedianSeconds'
    if ($null -ne $median) { $median } else { Get-Measured $Contender 'Seconds' }
}

function Get-ResultLines([object[]] $Contenders) {
    # One line per tool: median time, rate, and for Kcopyd the best reference tool's time over its own.
    foreach ($row in $Contenders.Row | Select-Object -Unique) {
        $group = @($Contenders | Where-Object Row -eq $row)
        $references = @($group | Where-Object Reference)
        $others = @($references | ForEach-Object { Get-Seconds $_ })
        # Against the job's own time, another Kcopyd run counts with its own job time too.
        $othersByJob = @($references | ForEach-Object { $job = Get-Measured $_ 'JobSeconds'; if ($null -ne $job) { $job } else { Get-Seconds $_ } })
        foreach ($c in $group) {
            $seconds = Get-Seconds $c
            $jobSeconds = Get-Measured $c 'JobSeconds'
            $p99 = Get-Measured $c 'P99Seconds'
            $ratio = if ($c.Reference -or $c.Tool -notlike 'Kcopyd*') { '' }
            elseif (-not $others) { 'n/a' }
            else { '{0:N2}' -f (($others | Measure-Object -Minimum).Minimum / $seconds) }
            $hostKiB = @($c.Results | Where-Object { $_.PSObject.Properties['HostPeakKiB'] -and $null -ne $_.HostPeakKiB } | ForEach-Object HostPeakKiB)
            [pscustomobject]@{
                Row         = $c.Row
                Tool        = $c.Tool
                Seconds     = if ($null -ne $p99) { '{0:N4}' -f $seconds } else { '{0:N3}' -f $seconds }
                Rate        = if ($null -ne $p99) { '{0:N2} ms, p99 {1:N2} ms' -f (1000 * $seconds), (1000 * $p99) }
                elseif ($c.Row -like '*jobs of*') { '{0:N0} jobs/s' -f ($JobCount / $seconds) } else { '{0:N2} GB/s' -f ($c.Bytes / 1e9 / $seconds) }
                Ratio       = $ratio
                'Job s'     = if ($jobSeconds) { '{0:N3}' -f $jobSeconds } else { '' }
                # The same ratio on the job's own time: what the engine does once the module is loaded.
                'Job ratio' = if ($jobSeconds -and $othersByJob -and $ratio) { '{0:N2}' -f (($othersByJob | Measure-Object -Minimum).Minimum / $jobSeconds) } else { '' }
                'Peak MiB'  = '{0:N0}' -f (($c.Results.PeakKiB | Measure-Object -Maximum).Maximum / 1KB)
                'Host MiB'  = if ($hostKiB) { '{0:N0}' -f (($hostKiB | Measure-Object -Maximum).Maximum / 1KB) } else { '' }
            }
        }
    }
}

function Get-HostVerdicts([object[]] $Contenders) {
    # What the host costs, row by row: the cmdlets through the host against the engine's API with no host.
    foreach ($row in $Contenders.Row | Select-Object -Unique) {
        $group = @($Contenders | Where-Object Row -eq $row)
        $operations = @{}
        foreach ($c in $group) { if ($c.Results[0].PSObject.Properties['Operation']) { $operations[$c.Tool] = $c.Results[0].Operation } }
        $viaHost = $group | Where-Object { $operations[$_.Tool] -in 'Copy', 'Latency', 'HostJobs' } | Select-Object -First 1
        $engine = $group | Where-Object { $operations[$_.Tool] -in 'EngineCopy', 'EngineLatency', 'Jobs' } | Select-Object -First 1
        if (-not $viaHost -or -not $engine) { continue }
        $hostSeconds = Get-Seconds $viaHost
        $engineSeconds = Get-Seconds $engine
        switch ($operations[$viaHost.Tool]) {
            'Copy' {
                $change = $hostSeconds / $engineSeconds - 1
                $jobChange = (Get-Measured $viaHost 'JobSeconds') / (Get-Measured $engine 'JobSeconds') - 1
                'Host cost, {0}: {1} took {2:N3} s against {3:N3} s for {4}: {5:+0.0;-0.0}% ({6} the 5% target); the job''s own time {7:+0.0;-0.0}%.' -f $row,
                    $viaHost.Tool, $hostSeconds, $engineSeconds, $engine.Tool, (100 * $change), $(if ($change -le 0.05) { 'within' } else { 'outside' }), (100 * $jobChange)
            }
            'Latency' {
                $hostP99 = Get-Measured $viaHost 'P99Seconds'
                $engineP99 = Get-Measured $engine 'P99Seconds'
                'Host cost, {0}: {1:N2} ms median, {2:N2} ms p99 through the host ({3}), against {4:N2} ms and {5:N2} ms for {6}: {7:N1} and {8:N1} times as long.' -f $row,
                    (1000 * $hostSeconds), (1000 * $hostP99), $viaHost.Tool, (1000 * $engineSeconds), (1000 * $engineP99), $engine.Tool,
                    ($hostSeconds / $engineSeconds), ($hostP99 / $engineP99)
            }
            'HostJobs' {
                'Host cost, {0}: {1:N0} jobs/s through the host ({2}), against {3:N0} jobs/s for {4}: a ratio of {5:N3}.' -f $row,
                    ($JobCount / $hostSeconds), $viaHost.Tool, ($JobCount / $engineSeconds), $engine.Tool, ($engineSeconds / $hostSeconds)
            }
        }
    }
}

function Get-TransferSeconds($Contender) {
    # The transfer's own time: the job's, or nbdcopy's and fio's within their run; a tool run alone is all transfer.
    $job = Get-Measured $Contender 'JobSeconds'
    if ($null -ne $job) { $job } else { Get-Seconds $Contender }
}

function Get-TargetVerdicts([object[]] $Contenders) {
    # The NBD and mirror rows against their targets, on the transfer's own time: loading the module and creating
    # the mirror come before the transfer and say nothing of it.
    $targets = @(
        @{ What = 'Export cost'; Row = 'nbdcopy * into 2-leg mirror'; Tool = 'Kcopyd nbdcopy into Publish-MirrorDevice'; Against = 'Kcopyd Start-RegionCopy into the mirror'; Target = 0.9 }
        @{ What = 'Export cost'; Row = 'fio randwrite*'; Tool = 'Kcopyd fio on Publish-MirrorDevice -BlockDevice'; Against = 'fio on nbdkit file, one leg (nbdfuse, losetup)'; Target = $null }
        @{ What = 'NBD client'; Row = 'copy * from nbdkit file'; Tool = 'Kcopyd Start-RegionCopy -Source nbd+unix'; Against = 'nbdcopy --flush'; Target = 1.0 }
        @{ What = 'The mirror''s own cost'; Row = 'write * via 2-leg mirror'; Tool = 'Kcopyd Start-RegionCopy into the mirror'; Against = 'Kcopyd Start-RegionCopy 1 to 2, the same legs'; Target = 0.97 }
        @{ What = 'Sparse'; Row = 'sparse *'; Tool = 'Kcopyd Start-RegionCopy -Sparse'; Against = 'nbdcopy --flush'; Target = 1.0; Whole = $true }
        @{ What = 'Sparse'; Row = 'sparse *'; Tool = 'Kcopyd Start-RegionCopy -Sparse'; Against = 'qemu-img convert -n -S 4k -t none'; Target = 1.0; Whole = $true }
        @{ What = 'Sparse'; Row = 'sparse *'; Tool = 'Kcopyd Start-RegionCopy -DestinationIsZero'; Against = 'nbdcopy --flush --destination-is-zero'; Target = 1.0; Whole = $true }
        @{ What = 'Sparse'; Row = 'sparse *'; Tool = 'Kcopyd Start-RegionCopy -DestinationIsZero'; Against = 'qemu-img convert -n -S 4k -t none --target-is-zero'; Target = 1.0; Whole = $true }
        # Within 2x: the copy alone takes at least half the time of the copy with -Verify.
        @{ What = 'The cost of -Verify'; Row = 'copy * -Verify'; Tool = 'Kcopyd Start-RegionCopy -Verify'; Against = 'Kcopyd Start-RegionCopy, no -Verify'; Target = 0.5 }
    )
    foreach ($t in $targets) {
        $ours = $Contenders | Where-Object { $_.Row -like $t.Row -and $_.Tool -eq $t.Tool } | Select-Object -First 1
        $other = $Contenders | Where-Object { $_.Row -like $t.Row -and $_.Tool -eq $t.Against } | Select-Object -First 1
        if (-not $ours -or -not $other) { continue }
        # Against a tool run alone, the whole run counts, loading the module included (as the other rows' Ratio).
        $oursSeconds = if ($t['Whole']) { Get-Seconds $ours } else { Get-TransferSeconds $ours }
        $otherSeconds = if ($t['Whole']) { Get-Seconds $other } else { Get-TransferSeconds $other }
        $ratio = $otherSeconds / $oursSeconds
        $verdict = if ($null -eq $t.Target) { '' } else { ' ({0} the {1:N2}x target)' -f $(if ($ratio -ge $t.Target) { 'within' } else { 'outside' }), $t.Target }
        '{0}, {1}: {2} took {3:N3} s against {4:N3} s for {5}, {6}: {7:N2}x{8}.' -f $t.What, $ours.Row,
            $ours.Tool, $oursSeconds, $otherSeconds, $other.Tool, $(if ($t['Whole']) { 'each the whole run' } else { 'each the transfer''s own time' }), $ratio, $verdict
    }
}

function Get-MemoryVerdict($Small, $Large) {
    if (-not $Large) { return $null }
    $smallKiB = ($Small.Results.PeakKiB | Measure-Object -Maximum).Maximum
    $largeKiB = $Large.Results[0].PeakKiB
    $change = ($largeKiB - $smallKiB) / $smallKiB
    'Peak memory, {0}: {1:N0} MiB, against {2:N0} MiB for {3}: {4:+0.0;-0.0}% ({5} the 10% target).' -f $Large.Tool, ($largeKiB / 1KB), ($smallKiB / 1KB),
        $Small.Tool, (100 * $change), $(if ([Math]::Abs($change) -le 0.10) { 'within' } else { 'outside' })
}

function Get-Machine {
    $cpu = (Get-Content /proc/cpuinfo | Where-Object { $_ -like 'model name*' } | Select-Object -First 1) -replace '^[^:]*:\s*', ''
    $memKiB = [long]((Get-Content /proc/meminfo | Where-Object { $_ -like 'MemTotal:*' }) -replace '\D', '')
    $dio = @($Devices.DirectIo | Sort-Object -Unique)
    [ordered]@{
        'CPU'                         = "$cpu, $([Environment]::ProcessorCount) cores (nproc)"
        'memory'                      = '{0:N1} GiB' -f ($memKiB / 1MB)
        'kernel'                      = (uname -r)
        'filesystem under the images' = "$(findmnt -no FSTYPE -T $Folder) ($Folder)"
        'loop devices'                = 'direct I/O ' + $(if ($dio.Count -gt 1) { 'mixed' } elseif ($dio[0]) { 'on' } else { 'off' }) + ' (losetup --direct-io=on; /sys/block/loopN/loop/dio)'
    }
}

function Get-Commit {
    $commit = (git -C $PSScriptRoot rev-parse --short HEAD 2>$null) ?? 'unknown'
    if (git -C $PSScriptRoot status --porcelain 2>$null) { "$commit (with uncommitted changes)" } else { $commit }
}

function Get-ToolVersions {
    @(
        (dd --version | Select-Object -First 1)
        (qemu-img --version | Select-Object -First 1)
        (nbdcopy --version | Select-Object -First 1)
        (blkdiscard --version | Select-Object -First 1)
        (cmp --version | Select-Object -First 1)
    ) -join '; '
}

function ConvertTo-MarkdownTable([object[]] $Lines) {
    $names = $Lines[0].PSObject.Properties.Name
    '| ' + ($names -join ' | ') + ' |'
    '|' + (($names | ForEach-Object { if ($_ -in 'Row', 'Tool') { '---' } else { '---:' } }) -join '|') + '|'
    foreach ($line in $Lines) { '| ' + (($names | ForEach-Object { $line.$_ }) -join ' | ') + ' |' }
}

function Write-Report([object[]] $Lines, [hashtable] $Facts) {
    $machine = $Facts.Machine
    $command = 'dotnet pwsh -NoProfile ./build.ps1 Bench' + (($Facts.Arguments.GetEnumerator() |
                ForEach-Object { " -$($_.Key) $($_.Value)" }) -join '') + $(if ($Facts.Note) { " -Note '$($Facts.Note)'" })
    $doc = @(
        '# Benchmark'
        ''
        "Measured on $($Facts.Date) at commit $($Facts.Commit) by ``$command``."
        'The table is written by the benchmark itself (`tests/benchmark/Invoke-Benchmark.ps1`); run it again to replace it.'
        ''
        '## Machine'
        ''
        '| | |'
        '|---|---|'
        foreach ($key in $machine.Keys) { "| $key | $($machine[$key]) |" }
        "| load average (1 min) at start, end | $($Facts.LoadStart), $($Facts.LoadEnd) |"
        "| Kcopyd I/O backend | $($Facts.IoBackend) |"
        "| other tools | $($Facts.Tools) |"
        ''
        '## Results'
        ''
        "Median of $Runs runs (the memory check's large copy: once). Ratio is the best other tool's median time over"
        "Kcopyd's: above 1 Kcopyd is faster. In the $($JobBytes / 1KB) KiB job and the jobs rows the other tool is the engine's API"
        'in a pwsh with no host, so their Ratio is what the host costs (below 1 the host is slower). GB/s is 10^9 bytes'
        'of the region per second (for fan-out: the region, which reaches each of the three destinations). Job s is'
        'the median of the Kcopyd job''s own time, from its StartTime to its EndTime, without loading the module; Job'
        "ratio is the Ratio on that time. The $($JobBytes / 1KB) KiB job row times $LatencyJobCount jobs one after another, each alone from"
        'submit to Completed: Seconds is the median job (its Ratio compares medians), Rate the median and the 99th'
        'percentile (over runs: the median of each). Peak MiB is the largest of any run of the pwsh''s peak resident set'
        'plus, for the cmdlets, the host''s peak during the same run, which Host MiB shows alone (see below).'
        ''
        ConvertTo-MarkdownTable $Lines
        ''
        if ($Facts.MemoryVerdict) { $Facts.MemoryVerdict }
        if ($Facts.MemoryNote) { $Facts.MemoryNote }
        if ($Facts.HostVerdicts) { ''; $Facts.HostVerdicts | ForEach-Object { "- $_" } }
        ''
        '## How it was measured'
        ''
        '- Every tool works on the same loop devices over image files, each device exactly the size of the region,'
        '  so the tools that copy whole devices (qemu-img, nbdcopy) copy the same bytes as the ones given a length.'
        '  The source holds random data, so no tool can skip zero blocks.'
        '- Before every run the destinations are reset (`blkdiscard -z`; before zeroing: random data copied back)'
        '  and page caches are dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`). The tools take turns within a run.'
        '- After every run the result is checked: SHA-256 of each destination region equals the source region''s;'
        '  a zeroed region equals /dev/zero (`cmp -n`). A run that fails the check stops the benchmark.'
        '- The cmdlets run in the Kcopyd host (`bin/host/Kcopyd.Host.dll`); the benchmark has one of its own'
        '  (`KCOPYD_RUNTIME_DIR` and `KCOPYD_STATE_DIR` in a new temporary folder, so the default job history of 1000'
        '  and no mirrors), started before the first row and stopped at the end. The host outlives the pwsh that'
        '  started it, so a user''s cmdlet finds it running: no timed run includes a host start. Starting it (the first'
        "  cmdlet, ``Get-CopyJob``, in a pwsh of its own, after its Import-Module) took $('{0:N2}' -f $Facts.HostStartSeconds) s; then, untimed, it ran"
        '  one 4 MiB `Start-RegionCopy -Wait` and one `Clear-Region -Wait`, as a host that has served its users has.'
        '- Kcopyd runs in a `dotnet pwsh` process of its own per run; its time runs from before `Import-Module` to'
        '  the end of the job, so loading the module, and for the cmdlets loading their RPC client and connecting to'
        '  the host, is included. Starting pwsh itself is not: it took a median'
        "  of $('{0:N2}' -f $Facts.PwshStartSeconds) s more per process. The engine rows (""engine API ..., no host"") call"
        '  `CopyClient.Copy` in that pwsh, with the host''s default client options, and wait for the job.'
        "- The jobs rows time only submitting the $('{0:N0}' -f $JobCount) jobs and waiting for all of them, after the module is loaded"
        '  (and, for the host row, connected).'
        '  The engine row is a PowerShell loop over `CopyClient.Copy` with the devices opened once. The host row is a'
        '  loop of `Start-RegionCopy -Force` (no -Wait), then `Wait-CopyJob` on the last job and `Get-CopyJob` until'
        '  none is queued or running; the host opens the devices for each job, exclusively without -Force, which'
        '  would refuse a job (DeviceInUse) while the one before it still writes the device. Of the host''s jobs'
        '  the finished ones still listed (the last 1000) are checked to have completed, and the destination''s'
        '  checksum covers them all.'
        "- The $($JobBytes / 1KB) KiB job row: $LatencyJobCount jobs to successive offsets, each timed from its submit to its end"
        '  (`Start-RegionCopy -Wait`; `CopyClient.Copy` then waiting for the job), after 20 untimed ones in the same pwsh.'
        '- Peak memory: VmHWM of the pwsh (read from /proc/self/status at its end), plus for the cmdlets the host''s'
        '  VmHWM for that run: the host lives across runs, so its high-water mark is reset to its resident set just'
        '  before the run starts (`echo 5 > /proc/PID/clear_refs`) and read when the run ends. Host MiB thus includes'
        '  what the host keeps resident from earlier runs (its heap, its clients'' page pools), as any user''s host'
        '  would; the sum of the two peaks is at most what both held at one moment. GNU `time` %M for the other tools.'
        '  What the host keeps resident grows over the rows (Host MiB), so the memory check copies the rows'' size'
        '  again just before its large copy, on the same host and devices, and compares those two.'
        '- Options: `dd bs=4M iflag=direct oflag=direct`; `qemu-img convert -n -f raw -O raw -t none -T none -W -m 16`;'
        '  `nbdcopy --flush` (it goes through the page cache, so it waits for the data to reach the destination as'
        '  the O_DIRECT tools do); `blkdiscard -z`; Kcopyd with its default client.'
        '- The compare row reads the source and an identical copy of it (made once, untimed): `Compare-Region` (its'
        '  Job s is the compare alone, after the module is loaded), `cmp -n` (through the page cache, dropped before'
        '  each run) and `qemu-img compare -q -f raw -F raw -T none`; each fails its run if it finds a difference.'
        '- The sparse row copies an image file that is 90% holes (a random MiB at the start of every 10 MiB) into a new,'
        '  empty sparse file: `Start-RegionCopy -Sparse` (zero chunks and holes punched) and `-DestinationIsZero` (not'
        '  written at all), `nbdcopy --flush` (with and without `--destination-is-zero`) and `qemu-img convert -n -S 4k'
        '  -t none` (with and without `--target-is-zero`); a run fails if the file differs from the source or allocated'
        '  more than 20% of its size. Its verdicts compare whole runs, loading the module included.'
        '- The verify row is the copy row''s copy with `-Verify` (each destination chunk re-read with O_DIRECT and'
        '  its hash compared) against the same copy without it; the target is within 2x.'
        '- Mirrors: the resync rows time `New-MirrorDevice` over the source (the default leg) and the reset legs until'
        '  `Wait-MirrorDevice` returns, with the default region size; the write row creates the mirror with -NoSync'
        '  and times the copy into it, against the same region copied to the same two legs by one copy of 1 to 2,'
        '  which also reads it once and writes it twice: its Job ratio is what the mirror itself costs (1 would be free).'
        '- NBD: the export rows create the same -NoSync mirror and `Publish-MirrorDevice` it, on a Unix socket for'
        '  `nbdcopy --flush` (its flush reaches the legs), with -BlockDevice (nbdfuse and a loop device) for fio;'
        '  their Job s is the nbdcopy or fio run alone, after the module, the mirror and the export are set up.'
        '  The references serve one leg with nbdkit''s file plugin (`nbdkit file`; for fio through nbdfuse and'
        "  ``losetup --direct-io=on`` as -BlockDevice does, set up untimed). fio: ``$FioWrite``"
        '  with `--size` of the region, so each 64 KiB block is written once; afterwards `fio --verify_only` checks'
        '  every block''s checksum on each leg itself. The NBD client row serves the source with `nbdkit -r file` and'
        '  copies it out with `Start-RegionCopy -Source nbd+unix:///?socket=...` and with `nbdcopy --flush`.'
        '- The verdicts under the table compare the transfer''s own time (Job s; a tool run alone: its Seconds).'
        if ($Facts.Note) { ''; '## Conditions'; ''; $Facts.Note }
    )
    $folder = Split-Path $OutFile
    if ($folder -and -not (Test-Path $folder)) { New-Item -ItemType Directory $folder | Out-Null }
    Set-Content -Path $OutFile -Value $doc
    Write-Host "Wrote $OutFile"
}

# ---- the run ----------------------------------------------------------------------------------------------

function Test-Row([string] $Name) {
    # -Rows chose this row (a name or a wildcard; through ./build.ps1 Bench the names arrive as one string, "a,b").
    @($Rows -split ',' | Where-Object { $Name -like $_.Trim() }).Count -gt 0
}

function Invoke-Benchmark {
    $bytes = Get-RegionBytes $SizeGiB
    $largeBytes = Get-RegionBytes $MemoryCheckGiB
    New-Item -ItemType Directory $WorkFolder | Out-Null
    $loadStart = ((Get-Content /proc/loadavg) -split ' ')[0]

    $shortfall = Get-SpaceShortfall (4 * $bytes) 'The benchmark'
    if ($shortfall) { throw $shortfall }
    $source = New-BenchDevice 'source' $bytes
    $targets = @(1..3 | ForEach-Object { New-BenchDevice "target$_" $bytes })
    Write-Host "Source $($source.Path), targets $($targets.Path -join ', '); $(Get-SizeText $bytes) each, direct I/O $($source.DirectIo)"
    Write-RandomData $source.Path $bytes
    $sourceHash = Get-BenchSha256 $source.Path $bytes

    Start-BenchHost
    $contenders = @(
        if (Test-Row copy) { Invoke-Row (Get-CopyContenders $source.Path $targets[0].Path $bytes $sourceHash) }
        if (Test-Row fan-out) { Invoke-Row (Get-FanOutContenders $source.Path $targets.Path $bytes $sourceHash) }
        if (Test-Row latency) { Invoke-Row (Get-LatencyContenders $source.Path $targets[0].Path $bytes) }
        if (Test-Row jobs) { Invoke-Row (Get-JobsContenders $source.Path $targets[0].Path $bytes) }
        if (Test-Row compare) { Invoke-Row (Get-CompareContenders $source.Path $targets[0].Path $bytes) }
        if (Test-Row sparse) { Invoke-Row (Get-SparseContenders $bytes) }
        if (Test-Row verify) { Invoke-Row (Get-VerifyContenders $source.Path $targets[0].Path $bytes $sourceHash) }
        if (Test-Row zero) { Invoke-Row (Get-ZeroContenders $source.Path $targets[0].Path $bytes) }
        if (Test-Row resync) {
            Invoke-Row (Get-ResyncContenders $source.Path $targets[0].Path $bytes $sourceHash)
            Invoke-Row (Get-ResyncContenders $source.Path $targets[0..1].Path $bytes $sourceHash)
        }
        if (Test-Row mirror) { Invoke-Row (Get-MirrorWriteContenders $source.Path $targets[0..1].Path $bytes $sourceHash) }
        if (Test-Row export) { Invoke-Row (Get-ExportContenders $source.Path $targets[0..1].Path $bytes $sourceHash) }
        if (Test-Row fio) { Invoke-Row (Get-FioContenders $targets[0..1].Path $bytes) }
        if (Test-Row nbd-client) { Invoke-NbdClientRow $source.Path $targets[0].Path $bytes $sourceHash }
        if (Test-Row resume) { Invoke-Row (Get-ResumeContenders $source.Path $targets[0].Path $bytes $sourceHash) }
    )
    if (-not $contenders) { throw "No row is named by -Rows $($Rows -join ',')." }
    $machine = Get-Machine   # while the devices are attached: it reports their direct I/O
    Remove-BenchDevices

    $small = $large = $null
    $memoryNote = if (-not (Test-Row memory)) { 'The memory check was not run (-Rows).' }
    elseif ($largeBytes -le 0) { 'The large copy of the memory check was skipped (-MemoryCheckGiB 0).' }
    else { Get-SpaceShortfall (2 * $largeBytes) "The $(Get-SizeText $largeBytes) memory check" }
    if (-not (Test-Row memory)) {
        Write-Warning $memoryNote
    } elseif ($memoryNote) {
        Write-Warning $memoryNote
        # Without the large copy, the memory check's line is the copy row's Kcopyd runs again, seen for their memory.
        $small = New-Contender -Row 'peak memory' -Tool "Kcopyd copy $(Get-SizeText $bytes)" -Bytes $bytes
        $contenders[0].Results | ForEach-Object { $small.Results.Add($_) }
    } else {
        $small, $large = Measure-LargeCopy $largeBytes $bytes
    }

    $lines = @(Get-ResultLines @($contenders; if ($small) { $small }; if ($large) { $large }))
    $lines | Format-Table -AutoSize -Wrap | Out-String -Width 200 | Out-Host
    $verdict = Get-MemoryVerdict $small $large
    if ($verdict) { Write-Host $verdict }
    $hostVerdicts = @(Get-HostVerdicts $contenders) + @(Get-TargetVerdicts $contenders)
    $hostVerdicts | ForEach-Object { Write-Host $_ }

    $kcopydRuns = @(@($contenders; if ($large) { $small; $large }) | Where-Object { $_ } | ForEach-Object { $_.Results } | Where-Object { $_.PSObject.Properties['Operation'] })
    $arguments = [ordered]@{}
    foreach ($name in 'SizeGiB', 'Runs', 'Folder', 'MemoryCheckGiB') { $arguments[$name] = Get-Variable $name -ValueOnly }
    Write-Report $lines @{
        Machine          = $machine
        Date             = (Get-Date).ToUniversalTime().ToString("yyyy-MM-dd HH:mm 'UTC'")
        Commit           = Get-Commit
        Arguments        = $arguments
        LoadStart        = $loadStart
        LoadEnd          = ((Get-Content /proc/loadavg) -split ' ')[0]
        IoBackend        = @($kcopydRuns.IoBackend | Where-Object { $_ } | Sort-Object -Unique) -join ', '
        Tools            = Get-ToolVersions
        # The jobs and latency runs time only the jobs, so only the others tell how long pwsh itself takes to start.
        PwshStartSeconds = Get-Median @($kcopydRuns | Where-Object Operation -in $WholeOperations | ForEach-Object { $_.ProcessSeconds - $_.Seconds })
        HostStartSeconds = $BenchHost.StartSeconds
        HostVerdicts     = $hostVerdicts
        MemoryVerdict    = $verdict
        MemoryNote       = $memoryNote
        Note             = $Note
    }
}

# dotnet pwsh finds the repository's PowerShell through the tool manifest above this folder.
Push-Location $PSScriptRoot
$Failed = $true
try {
    Invoke-Benchmark
    $Failed = $false
} finally {
    # nbdkit and nbdfuse first, then the host: a mirror a failed run left open in it holds its legs' loop devices.
    Stop-NbdServers
    Stop-BenchHost
    Remove-BenchDevices
    Remove-Item $WorkFolder -Recurse -Force -ErrorAction Ignore
    Pop-Location
}
