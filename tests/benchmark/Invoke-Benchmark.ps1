#requires -Version 7.4
<#
.SYNOPSIS
    Measures Kcopyd against dd, qemu-img, nbdcopy and blkdiscard on the same loop devices, and writes the table.
.DESCRIPTION
    Attaches loop devices (direct I/O where the kernel allows it) over image files in -Folder and measures, as
    the median of -Runs runs with the tools taking turns:
      copy      one random region device to device: Start-RegionCopy, dd, qemu-img convert, nbdcopy
      fan-out   the same region to three devices: one Start-RegionCopy against three dd runs one after another
      jobs      10,000 copy jobs of 64 KiB through the engine's API from PowerShell (jobs per second)
      zero      the region zeroed: Clear-Region against blkdiscard -z
      resync    a new mirror of the source and one or two legs brought in sync, against dd to each leg in turn
      mirror    the region written through a 2-leg mirror, against the same write to one leg directly
      memory    the peak memory of the Kcopyd process for the copy above and for one copy of -MemoryCheckGiB
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

function Get-RegionHash([string] $Path, [long] $Bytes) {
    # Reads with O_DIRECT, so checking a copy does not warm the page cache for the next run.
    $line = bash -c "dd if='$Path' bs=$ChunkBytes count=$Bytes iflag=direct,count_bytes status=none | sha256sum"
    if ($LASTEXITCODE) { throw "Hashing $Path failed" }
    ($line -split ' ')[0]
}

function Assert-SameAsSource([string[]] $Paths, [long] $Bytes, [string] $SourceHash, [string] $Tool) {
    foreach ($path in $Paths) {
        $hash = Get-RegionHash $path $Bytes
        if ($hash -ne $SourceHash) { throw "$Tool left $path different from the source: SHA-256 $hash, expected $SourceHash" }
    }
}

function Assert-Zeroed([string] $Path, [long] $Bytes, [string] $Tool) {
    cmp -s -n $Bytes /dev/zero $Path
    if ($LASTEXITCODE) { throw "$Tool left $Path with bytes that are not zero in the first $Bytes" }
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

function Measure-Kcopyd([string] $Operation, [string] $Source, [string[]] $Destination, [long] $Bytes) {
    # A pwsh of its own per measurement: loading the module is part of the time, and the peak memory is this
    # operation's alone. The child's own clock leaves out the start of pwsh, which the process time shows.
    $arguments = @('-Operation', $Operation, '-ModulePath', $ModulePath, '-Destination', ($Destination -join ','),
        '-LengthBytes', $Bytes, '-JobCount', $JobCount, '-JobBytes', $JobBytes)
    if ($Source) { $arguments += '-Source', $Source }
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $output = dotnet pwsh -NoProfile -NonInteractive -File $ChildScript @arguments
    $clock.Stop()
    if ($LASTEXITCODE) { throw "Kcopyd $Operation failed: $output" }
    $result = @($output)[-1] | ConvertFrom-Json
    if ($result.State -ne 'Completed') { throw "Kcopyd $Operation ended $($result.State)" }
    [pscustomobject]@{
        Seconds        = $result.Seconds
        JobSeconds     = $result.JobSeconds
        PeakKiB        = $result.PeakKiB
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
        [scriptblock] $Prepare = { param($c) Clear-Untimed $c.Targets },
        [scriptblock] $Measure,
        [scriptblock] $Verify = { param($c) Assert-SameAsSource $c.Targets $c.Bytes $c.SourceHash $c.Tool }
    )
    [pscustomobject]@{
        Row = $Row; Tool = $Tool; Bytes = $Bytes; Source = $Source; Targets = $Targets; SourceHash = $SourceHash
        Prepare = $Prepare; Measure = $Measure; Verify = $Verify; Results = [Collections.Generic.List[object]]::new()
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
    New-Contender @common -Tool 'dd x3, one after another' -Measure {
        param($c)
        Measure-Native (($c.Targets | ForEach-Object { "dd if=$($c.Source) of=$_ bs=4M count=$($c.Bytes / 4MB) iflag=direct oflag=direct status=none" }) -join ' && ')
    }
}

function Get-JobsContenders([string] $Source, [string] $Target, [long] $Bytes) {
    # Past the end of a small region the jobs wrap around, so the check covers what they wrote.
    $checked = [Math]::Min($Bytes, [long]$JobCount * $JobBytes)
    New-Contender -Row "$('{0:N0}' -f $JobCount) jobs of $($JobBytes / 1KB) KiB" -Tool 'Kcopyd engine API from pwsh' -Bytes $checked `
        -Source $Source -Targets $Target -SourceHash (Get-RegionHash $Source $checked) `
        -Measure { param($c) Measure-Kcopyd Jobs $c.Source $c.Targets $c.Bytes }
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
    # What a mirror costs a writer: the same Start-RegionCopy into a 2-leg mirror and into one leg directly.
    $common = @{ Row = "write $(Get-SizeText $Bytes) via 2-leg mirror"; Bytes = $Bytes; Source = $Source; SourceHash = $SourceHash }
    New-Contender @common -Targets $Legs -Tool 'Kcopyd Start-RegionCopy into the mirror' -Measure { param($c) Measure-Kcopyd MirrorWrite $c.Source $c.Targets $c.Bytes }
    New-Contender @common -Targets $Legs[0] -Tool 'one leg directly (Start-RegionCopy)' -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes }
}

function Measure-LargeCopy([long] $Bytes) {
    # Once, on devices of its own: the other rows' images are gone by now, so their space is free again.
    $source = New-BenchDevice 'large-source' $Bytes
    $target = New-BenchDevice 'large-target' $Bytes
    Write-RandomData $source.Path $Bytes
    $contender = New-Contender -Row 'peak memory' -Tool "Kcopyd copy $(Get-SizeText $Bytes)" -Bytes $Bytes -Source $source.Path `
        -Targets $target.Path -SourceHash (Get-RegionHash $source.Path $Bytes) -Prepare {} `
        -Measure { param($c) Measure-Kcopyd Copy $c.Source $c.Targets $c.Bytes }
    Invoke-Row $contender -Times 1
}

# ---- the table --------------------------------------------------------------------------------------------

function Get-ResultLines([object[]] $Contenders) {
    # One line per tool: median time, rate, and for Kcopyd the best other tool's time over its own.
    foreach ($row in $Contenders.Row | Select-Object -Unique) {
        $group = @($Contenders | Where-Object Row -eq $row)
        $medians = @{}
        foreach ($c in $group) { $medians[$c.Tool] = Get-Median @($c.Results.Seconds) }
        $others = @($group | Where-Object Tool -notlike 'Kcopyd*' | ForEach-Object { $medians[$_.Tool] })
        # Against the job's own time, another Kcopyd run counts with its own job time too.
        $othersByJob = @($group | Where-Object Tool -notlike 'Kcopyd*' | ForEach-Object {
                if ($_.Results[0].PSObject.Properties['JobSeconds'] -and $null -ne $_.Results[0].JobSeconds) { Get-Median @($_.Results.JobSeconds) } else { $medians[$_.Tool] }
            })
        foreach ($c in $group) {
            $seconds = $medians[$c.Tool]
            $jobSeconds = if ($c.Results[0].PSObject.Properties['JobSeconds'] -and $null -ne $c.Results[0].JobSeconds) { Get-Median @($c.Results.JobSeconds) }
            $ratio = if ($c.Tool -notlike 'Kcopyd*') { '' }
            elseif (-not $others) { 'n/a' }
            else { '{0:N2}' -f (($others | Measure-Object -Minimum).Minimum / $seconds) }
            [pscustomobject]@{
                Row        = $c.Row
                Tool       = $c.Tool
                Seconds    = '{0:N3}' -f $seconds
                Rate       = if ($c.Row -like '*jobs of*') { '{0:N0} jobs/s' -f ($JobCount / $seconds) } else { '{0:N2} GB/s' -f ($c.Bytes / 1e9 / $seconds) }
                Ratio      = $ratio
                'Job s'    = if ($jobSeconds) { '{0:N3}' -f $jobSeconds } else { '' }
                # The same ratio on the job's own time: what the engine does once the module is loaded.
                'Job ratio' = if ($jobSeconds -and $othersByJob -and $c.Tool -like 'Kcopyd*') { '{0:N2}' -f (($othersByJob | Measure-Object -Minimum).Minimum / $jobSeconds) } else { '' }
                'Peak MiB' = '{0:N0}' -f (($c.Results.PeakKiB | Measure-Object -Maximum).Maximum / 1KB)
            }
        }
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
        "Kcopyd's: above 1 Kcopyd is faster. GB/s is 10^9 bytes of the region per second (for fan-out: the region,"
        'which reaches each of the three destinations). Job s is the median of the Kcopyd job''s own time, from its'
        'StartTime to its EndTime, without loading the module; Job ratio is the Ratio on that time. Peak MiB is the'
        'largest resident set of any run.'
        ''
        ConvertTo-MarkdownTable $Lines
        ''
        if ($Facts.MemoryVerdict) { $Facts.MemoryVerdict }
        if ($Facts.MemoryNote) { $Facts.MemoryNote }
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
        '- Kcopyd runs in a `dotnet pwsh` process of its own per run; its time runs from before `Import-Module` to'
        '  the end of the job, so loading the module is included. Starting pwsh itself is not: it took a median'
        "  of $('{0:N2}' -f $Facts.PwshStartSeconds) s more per process. The jobs row times only submitting the $('{0:N0}' -f $JobCount) jobs"
        '  (a PowerShell loop over `CopyClient.Copy`) and waiting for all of them, with the devices opened once.'
        '- Peak memory: VmHWM of the Kcopyd process (read from /proc/self/status at its end); GNU `time` %M for'
        '  the other tools.'
        '- Options: `dd bs=4M iflag=direct oflag=direct`; `qemu-img convert -n -f raw -O raw -t none -T none -W -m 16`;'
        '  `nbdcopy --flush` (it goes through the page cache, so it waits for the data to reach the destination as'
        '  the O_DIRECT tools do); `blkdiscard -z`; Kcopyd with its default client.'
        '- Mirrors: the resync rows time `New-MirrorDevice` over the source (the default leg) and the reset legs until'
        '  `Wait-MirrorDevice` returns, with the default region size; the write row creates the mirror with -NoSync'
        '  and times the copy into it; the direct row is the same copy into one leg, so its ratio is the cost of the'
        '  second leg (1 would be free).'
        if ($Facts.Note) { ''; '## Conditions'; ''; $Facts.Note }
    )
    $folder = Split-Path $OutFile
    if ($folder -and -not (Test-Path $folder)) { New-Item -ItemType Directory $folder | Out-Null }
    Set-Content -Path $OutFile -Value $doc
    Write-Host "Wrote $OutFile"
}

# ---- the run ----------------------------------------------------------------------------------------------

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
    $sourceHash = Get-RegionHash $source.Path $bytes

    $contenders = @(
        Invoke-Row (Get-CopyContenders $source.Path $targets[0].Path $bytes $sourceHash)
        Invoke-Row (Get-FanOutContenders $source.Path $targets.Path $bytes $sourceHash)
        Invoke-Row (Get-JobsContenders $source.Path $targets[0].Path $bytes)
        Invoke-Row (Get-ZeroContenders $source.Path $targets[0].Path $bytes)
        Invoke-Row (Get-ResyncContenders $source.Path $targets[0].Path $bytes $sourceHash)
        Invoke-Row (Get-ResyncContenders $source.Path $targets[0..1].Path $bytes $sourceHash)
        Invoke-Row (Get-MirrorWriteContenders $source.Path $targets[0..1].Path $bytes $sourceHash)
    )
    # The memory check's first line is the copy row's Kcopyd runs again, seen for their memory.
    $small = New-Contender -Row 'peak memory' -Tool "Kcopyd copy $(Get-SizeText $bytes)" -Bytes $bytes
    $contenders[0].Results | ForEach-Object { $small.Results.Add($_) }
    $machine = Get-Machine   # while the devices are attached: it reports their direct I/O
    Remove-BenchDevices

    $large = $null
    $memoryNote = if ($largeBytes -le 0) { 'The large copy of the memory check was skipped (-MemoryCheckGiB 0).' }
    else { Get-SpaceShortfall (2 * $largeBytes) "The $(Get-SizeText $largeBytes) memory check" }
    if ($memoryNote) { Write-Warning $memoryNote } else { $large = Measure-LargeCopy $largeBytes }

    $lines = @(Get-ResultLines @($contenders; $small; if ($large) { $large }))
    $lines | Format-Table -AutoSize -Wrap | Out-String -Width 200 | Out-Host
    $verdict = Get-MemoryVerdict $small $large
    if ($verdict) { Write-Host $verdict }

    $kcopydRuns = @(@($contenders; $large) | Where-Object { $_ } | ForEach-Object { $_.Results } | Where-Object { $_.PSObject.Properties['Operation'] })
    $arguments = [ordered]@{}
    foreach ($name in 'SizeGiB', 'Runs', 'Folder', 'MemoryCheckGiB') { $arguments[$name] = Get-Variable $name -ValueOnly }
    Write-Report $lines @{
        Machine          = $machine
        Date             = (Get-Date).ToUniversalTime().ToString("yyyy-MM-dd HH:mm 'UTC'")
        Commit           = Get-Commit
        Arguments        = $arguments
        LoadStart        = $loadStart
        LoadEnd          = ((Get-Content /proc/loadavg) -split ' ')[0]
        IoBackend        = @($kcopydRuns.IoBackend | Sort-Object -Unique) -join ', '
        Tools            = Get-ToolVersions
        # Jobs runs time only the jobs, so only the cmdlet runs tell how long pwsh itself takes to start.
        PwshStartSeconds = Get-Median @($kcopydRuns | Where-Object Operation -ne 'Jobs' | ForEach-Object { $_.ProcessSeconds - $_.Seconds })
        MemoryVerdict    = $verdict
        MemoryNote       = $memoryNote
        Note             = $Note
    }
}

# dotnet pwsh finds the repository's PowerShell through the tool manifest above this folder.
Push-Location $PSScriptRoot
try {
    Invoke-Benchmark
} finally {
    Remove-BenchDevices
    Remove-Item $WorkFolder -Recurse -Force -ErrorAction Ignore
    Pop-Location
}
