# Faults on real devices (../shared/FAULTS.md: nbdkit filters under nbdfuse under a loop device): bad sectors on the
# source, a failing one of three destinations, slow and paused destinations beside a client that keeps its rate, a
# copy into a hung device stopped within a bound, a full destination, a device gone mid-copy, mirror legs failing or
# hanging (failed as Hung past the leg timeout) during recovery and during writes. Each case records its figures
# (faults injected, bytes verified, rates, bounds) through ReliabilityReport.psm1.
BeforeAll {
    Import-Module "$PSScriptRoot/../pester/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/ReliabilityReport.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    $script:HostId = Use-TestHost
    $script:Scenario = 'faults'
    Clear-ReliabilityRecord $Scenario 'Faults on real devices'
    $script:Chunk = 2MB   # Start-RegionCopy's chunk: a failed read fails its whole chunk
    # The rates below are measured over this much; the quick scale keeps the copies short.
    $script:RateBytes = Select-ReliabilityScale -Quick 128MB -Full 512MB
    $script:Source = New-TestLoopDevice -Name 'f-src.img' -Size $RateBytes
    Write-RandomRegion -Path $Source -Offset 0 -Length $RateBytes -Seed 1501

    function Get-ChunkHashes([string] $Path, [long] $Length) {
        for ($at = 0; $at -lt $Length; $at += $Chunk) { Get-TestSha256 $Path $at ([Math]::Min($Chunk, $Length - $at)) }
    }

    function Get-NbdServerProcess([string] $Device) {
        # The nbdkit behind a New-TestNbdLoopDevice: the child of the nbdfuse that serves the device's backing file.
        $file = (Get-LoopBacking | Where-Object Device -eq $Device).BackingFile
        $fuse = @(pgrep -f "^nbdfuse $([regex]::Escape($file)) ")
        if ($fuse.Count -ne 1) { throw "no single nbdfuse serves $file" }
        $server = @(pgrep -P $fuse[0] '^nbdkit$')
        if ($server.Count -ne 1) { throw "no single nbdkit under nbdfuse $($fuse[0])" }
        [int]$server[0]
    }

    function Measure-ClientRate([string] $Destination, [string] $Client = 'rate') {
        # Three copies of $RateBytes on their own client into a healthy device, the last verified: the median of
        # their jobs' rates in bytes per second (one copy takes tens of milliseconds here: one alone is noise).
        $rates = foreach ($n in 1..3) {
            $job = Start-RegionCopy $Source $Destination -Length $RateBytes -Client $Client -Wait -Confirm:$false
            $job.State | Should -Be 'Completed'
            [long]($RateBytes / ($job.EndTime - $job.StartTime).TotalSeconds)
        }
        Get-TestSha256 $Destination 0 $RateBytes | Should -Be (Get-TestSha256 $Source 0 $RateBytes)
        @($rates | Sort-Object)[1]
    }

    function Wait-Until([scriptblock] $Condition, [string] $Because, [int] $Seconds = 30) {
        # Polls $Condition until it holds; a bound, not a measurement: it throws after $Seconds.
        $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
        while (-not (& $Condition)) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "Timed out after $Seconds s waiting for $Because." }
            Start-Sleep -Milliseconds 100
        }
    }

    function Get-Leg([string] $Mirror, [string] $Path) { (Get-MirrorDevice $Mirror).Legs | Where-Object Path -eq $Path }

    function Assert-HostUp {
        # The host that started with the file still answers, and a plain copy still works.
        (Get-KcopydHost).ProcessId | Should -Be $HostId -Because 'a failing device must not take the host down'
        $check = New-TestLoopDevice -Name "f-check-$(Get-Random).img" -Size 4MB
        (Start-RegionCopy $Source $check -Length 4MB -Wait -Confirm:$false).State | Should -Be 'Completed'
        Get-TestSha256 $check 0 4MB | Should -Be (Get-TestSha256 $Source 0 4MB)
    }
}

AfterAll {
    Get-CopyClient -ErrorAction Ignore | Where-Object Name -ne 'default' | Remove-CopyClient -Force -Confirm:$false -ErrorAction Ignore
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Read errors on the source' -Tag 'Reliability' {
    BeforeAll {
        # A 16 MiB source of random bytes whose two 64 KiB ranges fail every read (nbdkit's ddrescue filter over
        # the file plugin: a range not marked + in the map reads as EIO).
        $script:BadSize = 16MB
        $script:Bad = @(@{ At = 5MB; Length = 64KB }, @{ At = 11MB + 4KB; Length = 64KB })
        $folder = Split-Path (New-TestImage -Name 'f-bad.marker' -Size 0)
        $image = New-TestImage -Name 'f-bad-backing.img' -Size $BadSize
        Write-RandomRegion -Path $image -Offset 0 -Length $BadSize -Seed 1502
        $map = Join-Path $folder 'f-bad.map'
        $rows = [Collections.Generic.List[string]]::new()
        $at = 0
        foreach ($range in $Bad) {
            $rows.Add(('0x{0:X8}  0x{1:X8}  +' -f $at, ($range.At - $at)))
            $rows.Add(('0x{0:X8}  0x{1:X8}  -' -f $range.At, $range.Length))
            $at = $range.At + $range.Length
        }
        $rows.Add(('0x{0:X8}  0x{1:X8}  +' -f $at, ($BadSize - $at)))
        Set-Content $map (@('# Mapfile. Created by the Kcopyd reliability suite', '0x00000000     +', '#      pos        size  status') + $rows)
        $script:BadSource = New-TestNbdLoopDevice -Name 'f-bad' -Nbdkit '--filter=ddrescue', 'file', $image, "ddrescue-mapfile=$map"
        $script:Expected = @(Get-ChunkHashes $image $BadSize)
        $script:BadChunks = @($Bad | ForEach-Object { [int][Math]::Floor($_.At / $Chunk) } | Sort-Object -Unique)
    }

    It 'without -IgnoreErrors: the job fails as a read error naming EIO, and every chunk is the source''s or untouched' {
        $destination = New-TestLoopDevice -Name 'f-bad-dst1.img' -Size $BadSize
        Write-RandomRegion -Path $destination -Offset 0 -Length $BadSize -Seed 1503
        $old = @(Get-ChunkHashes $destination $BadSize)
        $records = $null
        $job = Start-RegionCopy $BadSource $destination -Wait -Confirm:$false -ErrorVariable records -ErrorAction SilentlyContinue
        $job.State | Should -Be 'Failed'
        $job.ReadError | Should -BeTrue
        $job.Errno | Should -Be 'EIO'
        @($records)[0].FullyQualifiedErrorId | Should -BeLike 'CopyReadFailed,*'
        $now = @(Get-ChunkHashes $destination $BadSize)
        $copied = 0
        for ($i = 0; $i -lt $now.Count; $i++) {
            if ($i -in $BadChunks) { $now[$i] | Should -Be $old[$i] -Because "chunk $i could not be read and must not be written" }
            elseif ($now[$i] -eq $Expected[$i]) { $copied++ }
            else { $now[$i] | Should -Be $old[$i] -Because "chunk $i is either copied whole or left as it was" }
        }
        $copied | Should -BeGreaterOrEqual $BadChunks[0] -Because 'the chunks before the first bad one were copied'
        Add-ReliabilityResult $Scenario 'source read errors, without -IgnoreErrors' ([ordered]@{
                'faults injected' = "$($Bad.Count) bad 64 KiB ranges"; 'job' = "Failed, ReadError, $($job.Errno)"
                'chunks copied whole before the stop' = "$copied of $($now.Count)"; 'bytes verified' = Format-Bytes $BadSize
            })
    }

    It 'with -IgnoreErrors: the copy goes past the bad chunks, which stay untouched, and every other byte is copied' {
        $destination = New-TestLoopDevice -Name 'f-bad-dst2.img' -Size $BadSize
        Write-RandomRegion -Path $destination -Offset 0 -Length $BadSize -Seed 1504
        $old = @(Get-ChunkHashes $destination $BadSize)
        $job = Start-RegionCopy $BadSource $destination -IgnoreErrors -Wait -Confirm:$false -ErrorAction SilentlyContinue
        $job.State | Should -Be 'Failed' -Because 'a copy that skipped bad sectors never looks complete'
        $job.ReadError | Should -BeTrue
        $job.BytesCopied | Should -Be ($BadSize - $BadChunks.Count * $Chunk)
        $now = @(Get-ChunkHashes $destination $BadSize)
        for ($i = 0; $i -lt $now.Count; $i++) {
            $want = if ($i -in $BadChunks) { $old[$i] } else { $Expected[$i] }
            $now[$i] | Should -Be $want -Because "chunk $i"
        }
        Add-ReliabilityResult $Scenario 'source read errors, with -IgnoreErrors' ([ordered]@{
                'faults injected' = "$($Bad.Count) bad 64 KiB ranges"; 'job' = "Failed, ReadError, $($job.Errno)"
                'bytes copied and verified' = Format-Bytes $job.BytesCopied; 'chunks skipped, verified untouched' = $BadChunks.Count
            })
    }
}

Describe 'Write errors on one of three destinations' -Tag 'Reliability' {
    It 'with -IgnoreErrors the two healthy destinations get every byte; the failing one is named' {
        $size = 16MB
        $good1 = New-TestLoopDevice -Name 'f-w-good1.img' -Size $size
        $good2 = New-TestLoopDevice -Name 'f-w-good2.img' -Size $size
        $failing = New-FailingDisk 'f-w-fail' -Size '16M'
        New-Item -ItemType File $failing.FailWrites | Out-Null
        try {
            $job = Start-RegionCopy $Source $good1, $failing.Device, $good2 -Length $size -IgnoreErrors -Wait -Confirm:$false -ErrorAction SilentlyContinue
        } finally { Remove-Item $failing.FailWrites }
        $job.State | Should -Be 'Failed'
        $job.WriteErrors | Should -Be @($failing.Device)
        $job.Errno | Should -Be 'EIO'
        $want = Get-TestSha256 $Source 0 $size
        Get-TestSha256 $good1 0 $size | Should -Be $want
        Get-TestSha256 $good2 0 $size | Should -Be $want
        Assert-HostUp
        Add-ReliabilityResult $Scenario 'write errors on 1 of 3 destinations (-IgnoreErrors)' ([ordered]@{
                'faults injected' = 'every write to one destination fails (EIO)'; 'job' = "Failed, WriteErrors $($job.WriteErrors.Count)"
                'bytes verified' = Format-Bytes (2 * $size)
            })
    }

    It 'without -IgnoreErrors the job stops; each chunk of the healthy destinations is the source''s or untouched' {
        $size = 16MB
        $good1 = New-TestLoopDevice -Name 'f-w2-good1.img' -Size $size
        $good2 = New-TestLoopDevice -Name 'f-w2-good2.img' -Size $size
        $failing = New-FailingDisk 'f-w2-fail' -Size '16M'
        $expected = @(Get-ChunkHashes $Source $size)
        $zero = [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData([byte[]]::new($Chunk)))
        New-Item -ItemType File $failing.FailWrites | Out-Null
        try {
            $records = $null
            $job = Start-RegionCopy $Source $good1, $failing.Device, $good2 -Length $size -Wait -Confirm:$false -ErrorVariable records -ErrorAction SilentlyContinue
        } finally { Remove-Item $failing.FailWrites }
        $job.State | Should -Be 'Failed'
        $job.WriteErrors | Should -Be @($failing.Device)
        @($records)[0].FullyQualifiedErrorId | Should -BeLike 'CopyWriteFailed,*'
        foreach ($good in $good1, $good2) {
            $now = @(Get-ChunkHashes $good $size)
            for ($i = 0; $i -lt $now.Count; $i++) { $now[$i] | Should -BeIn @($expected[$i], $zero) -Because "chunk $i of $good" }
        }
        Add-ReliabilityResult $Scenario 'write errors on 1 of 3 destinations (stops)' ([ordered]@{
                'faults injected' = 'every write to one destination fails (EIO)'; 'job' = "Failed, $($job.Errno)"
                'bytes checked chunk by chunk' = Format-Bytes (2 * $size)
            })
    }
}

Describe 'Slow and paused destinations beside another client' -Tag 'Reliability' {
    It 'another client''s copy to a healthy device keeps its rate while one job crawls into a slow disk and others hang on a paused one' {
        New-CopyClient rate -Confirm:$false | Out-Null
        $healthy = New-TestLoopDevice -Name 'f-rate.img' -Size $RateBytes
        Measure-ClientRate $healthy | Out-Null   # warm: the first copy of a session pays for opening and JIT
        $alone = Measure-ClientRate $healthy

        # A slow destination (2 MB/s, nbdkit's rate filter counts bits): a job on the default client into it runs
        # for the whole measurement.
        $slow = New-TestNbdLoopDevice -Name 'f-slow' -Nbdkit '--filter=rate', 'memory', '32M', 'rate=16M'
        $crawling = Start-RegionCopy $Source $slow -Length 32MB -Force -Confirm:$false
        Start-Sleep -Milliseconds 500
        $besideSlow = Measure-ClientRate $healthy
        (Get-CopyJob -Id $crawling.Id).State | Should -Be 'Running' -Because 'the slow job ran during the measurement'
        Stop-CopyJob -Id $crawling.Id -Confirm:$false
        Wait-CopyJob -Id $crawling.Id -Timeout 60 | Out-Null

        # A paused destination: two jobs of the default client hold its pages and wait on a disk that does not answer.
        $socket = Join-Path (Split-Path (New-TestImage -Name 'f-paused.marker' -Size 0)) 'f-paused.sock'
        $paused = New-TestNbdLoopDevice -Name 'f-paused' -Nbdkit '--filter=pause', '--filter=delay', 'memory', '32M', 'wdelay=100ms', "pause-control=$socket"
        $hung = @(
            Start-RegionCopy $Source $paused -Length 16MB -Force -Confirm:$false
            Start-RegionCopy $Source $paused -SourceOffset 16MB -DestinationOffset 16MB -Length 16MB -Force -Confirm:$false
        )
        $resumed = $false
        try {
            Start-Sleep -Milliseconds 500
            Send-PauseControl $socket 'p' | Should -Be 'P'
            $held = (Get-CopyJob -Id $hung.Id | Measure-Object BytesCopied -Sum).Sum
            $besidePaused = Measure-ClientRate $healthy
            (Get-CopyJob -Id $hung.Id | Measure-Object BytesCopied -Sum).Sum | Should -Be $held -Because 'the paused disk held its jobs during the measurement'
            Send-PauseControl $socket 'r' | Should -Be 'R'
            $resumed = $true
        } finally { if (-not $resumed) { Send-PauseControl $socket 'r' | Out-Null } }
        (Wait-CopyJob -Id $hung.Id -Timeout 120).State | Should -Be @('Completed', 'Completed')
        Get-TestSha256 $paused 0 32MB | Should -Be (Get-TestSha256 $Source 0 32MB)

        # Generous bounds on a shared machine (the benchmark measures speed): the other client is not held up.
        $besideSlow | Should -BeGreaterThan ($alone / 4)
        $besidePaused | Should -BeGreaterThan ($alone / 4)
        $mib = { param($rate) '{0:N0} MiB/s' -f ($rate / 1MB) }
        Add-ReliabilityResult $Scenario 'slow and paused destinations: another client''s rate' ([ordered]@{
                'alone' = & $mib $alone; 'beside a slow destination (2 MB/s)' = & $mib $besideSlow
                'beside a paused destination' = & $mib $besidePaused; 'copy measured' = Format-Bytes $RateBytes
                'copies measured' = '3 a case, the median'; 'bytes verified' = Format-Bytes (4 * $RateBytes + 32MB)
            })
    }

    It 'a copy into a hung device is bounded (the job goes Stopping, its pages come back)' {
        # A job of its own client writes into a disk that stops answering (nbdkit's pause filter): Stop-CopyJob
        # returns within the bound all the same, the job is Stopping while its writes are in the kernel, and once
        # the disk answers it ends Stopped and every page is back in the client's pool.
        $bound = 5   # Stop-CopyJob waits 2 s for a job to end, then says it is Stopping
        New-CopyClient hung -Confirm:$false | Out-Null
        $pages = (Get-CopyClient hung).PageCount
        $disk = New-PausableDisk 'f-hung' -Size '32M'
        $paused = $false
        try {
            # Started while the disk answers (the destination is opened and checked), held to a rate so it still
            # runs when the pause comes.
            $job = Start-RegionCopy $Source $disk.Device -Length 32MB -Client hung -BytesPerSecond 8MB -Force -Confirm:$false
            Wait-Until { (Get-CopyJob -Id $job.Id).BytesCopied -gt 0 } -Because 'the copy to start'
            Send-PauseControl $disk.Socket 'p' | Should -Be 'P'
            $paused = $true
            Wait-Until { (Get-CopyJob -Id $job.Id).IoInFlight -gt 0 } -Because 'the job to have writes on the paused disk'
            $clock = [Diagnostics.Stopwatch]::StartNew()
            Stop-CopyJob -Id $job.Id -Confirm:$false -WarningVariable warned -WarningAction SilentlyContinue
            $stopSeconds = $clock.Elapsed.TotalSeconds
            $stopSeconds | Should -BeLessThan $bound -Because 'stopping a job never waits on the device'
            ($warned -join "`n") | Should -Match 'is Stopping: \d+ I/O request'
            $now = Get-CopyJob -Id $job.Id
            $now.State | Should -Be 'Stopping'
            $now.IsFinished | Should -BeFalse
            $inFlight = $now.IoInFlight
            $inFlight | Should -BeGreaterThan 0
            (Get-CopyClient hung).FreePages | Should -BeLessThan $pages -Because 'the pages under the hung writes stay the job''s'
            Start-Sleep -Seconds 1
            (Get-CopyJob -Id $job.Id).State | Should -Be 'Stopping' -Because 'the disk still does not answer'
            Send-PauseControl $disk.Socket 'r' | Should -Be 'R'
            $paused = $false
            $clock.Restart()
            $ended = Wait-CopyJob -Id $job.Id -TimeoutSeconds 30
            Wait-Until { (Get-CopyClient hung).FreePages -eq $pages } -Because 'the pages to come back to the client'
            $reclaimSeconds = $clock.Elapsed.TotalSeconds
        } finally {
            if ($paused) { Send-PauseControl $disk.Socket 'r' | Out-Null }
        }
        $ended.State | Should -Be 'Stopped'
        $ended.IoInFlight | Should -Be 0
        # What the job wrote is the source's: it stopped between chunks, never inside one.
        $copied = [long][Math]::Floor($ended.BytesCopied / $Chunk) * $Chunk
        $copied | Should -BeGreaterThan 0
        Get-TestSha256 $disk.Device 0 $copied | Should -Be (Get-TestSha256 $Source 0 $copied)
        Assert-HostUp
        Add-ReliabilityResult $Scenario 'a copy into a hung device is bounded (job Stopping)' ([ordered]@{
                'faults injected' = 'destination paused mid-copy (nbdkit pause filter)'
                'Stop-CopyJob returned after' = '{0:N1} s (bound {1} s), job Stopping' -f $stopSeconds, $bound
                'I/O in flight seen' = $inFlight
                'resumed to Stopped, pages back' = '{0:N1} s ({1} of {1} pages)' -f $reclaimSeconds, $pages
                'bytes verified' = Format-Bytes $copied; 'host' = 'same process, copies again'
            })
    }
}

Describe 'A full destination' -Tag 'Reliability' {
    It 'a copy onto a disk that is full (nbdkit''s full plugin) fails with ENOSPC; the host stays up' {
        $full = New-TestNbdLoopDevice -Name 'f-full' -Nbdkit 'full', 'size=16M'
        $records = $null
        $job = Start-RegionCopy $Source $full -Length 8MB -Wait -Confirm:$false -ErrorVariable records -ErrorAction SilentlyContinue
        $job.State | Should -Be 'Failed'
        $job.Errno | Should -Be 'ENOSPC'
        $job.WriteErrors | Should -Be @($full)
        @($records)[0].FullyQualifiedErrorId | Should -BeLike 'CopyWriteFailed,*'
        @($records)[0].Exception.Message | Should -Match 'No space left on device \(ENOSPC\)'
        Assert-HostUp
        Add-ReliabilityResult $Scenario 'full destination' ([ordered]@{ 'faults injected' = 'every write ENOSPC'; 'job' = "Failed, $($job.Errno), CopyWriteFailed"; 'host' = 'up, copies again' })
    }
}

Describe 'A device gone mid-copy' -Tag 'Reliability' {
    It 'the destination''s server killed under nbdfuse: the job fails naming the errno, the host stays up' {
        $disk = New-TestNbdLoopDevice -Name 'f-gone-dst' -Nbdkit '--filter=delay', 'memory', '32M', 'wdelay=10ms'
        $job = Start-RegionCopy $Source $disk -Length 32MB -BytesPerSecond 4MB -Confirm:$false
        Start-Sleep -Seconds 1
        (Get-CopyJob -Id $job.Id).State | Should -Be 'Running'
        Stop-Process -Id (Get-NbdServerProcess $disk) -Force
        $records = $null
        $ended = Wait-CopyJob -Id $job.Id -Timeout 30 -ErrorVariable records -ErrorAction SilentlyContinue
        $ended.State | Should -Be 'Failed'
        $ended.Errno | Should -BeIn 'EIO', 'ENXIO', 'ENOTCONN'
        @($records)[0].FullyQualifiedErrorId | Should -BeLike 'CopyWriteFailed,*'
        Assert-HostUp
        Add-ReliabilityResult $Scenario 'destination detached mid-copy' ([ordered]@{ 'faults injected' = 'nbdkit killed mid-copy'; 'job' = "Failed after $(Format-Bytes $ended.BytesCopied), $($ended.Errno)"; 'host' = 'up, copies again' })
    }

    It 'the source''s server killed: the job fails as a read error, the host stays up' {
        $image = New-TestImage -Name 'f-gone-src-backing.img' -Size 32MB
        Write-RandomRegion -Path $image -Offset 0 -Length 32MB -Seed 1505
        $disk = New-TestNbdLoopDevice -Name 'f-gone-src' -Nbdkit '--filter=delay', 'file', $image, 'rdelay=10ms'
        $target = New-TestLoopDevice -Name 'f-gone-src-dst.img' -Size 32MB
        $job = Start-RegionCopy $disk $target -BytesPerSecond 4MB -Confirm:$false
        Start-Sleep -Seconds 1
        (Get-CopyJob -Id $job.Id).State | Should -Be 'Running'
        Stop-Process -Id (Get-NbdServerProcess $disk) -Force
        $records = $null
        $ended = Wait-CopyJob -Id $job.Id -Timeout 30 -ErrorVariable records -ErrorAction SilentlyContinue
        $ended.State | Should -Be 'Failed'
        $ended.ReadError | Should -BeTrue
        $ended.Errno | Should -BeIn 'EIO', 'ENXIO', 'ENOTCONN'
        @($records)[0].FullyQualifiedErrorId | Should -BeLike 'CopyReadFailed,*'
        # What was copied before is the source's.
        $copied = [long][Math]::Floor($ended.BytesCopied / $Chunk) * $Chunk
        if ($copied -gt 0) { Get-TestSha256 $target 0 ([Math]::Min($copied, 2MB)) | Should -Be (Get-TestSha256 $image 0 ([Math]::Min($copied, 2MB))) }
        Assert-HostUp
        Add-ReliabilityResult $Scenario 'source detached mid-copy' ([ordered]@{ 'faults injected' = 'nbdkit killed mid-copy'; 'job' = "Failed after $(Format-Bytes $ended.BytesCopied), ReadError, $($ended.Errno)"; 'host' = 'up, copies again' })
    }
}

Describe 'A mirror leg failing' -Tag 'Reliability' {
    It 'during recovery: the leg is dead, the default leg keeps its bytes; repaired, the mirror converges' {
        $size = 16MB
        $good = New-TestLoopDevice -Name 'f-mr-good.img' -Size $size
        Write-RandomRegion -Path $good -Offset 0 -Length $size -Seed 1506
        $data = Get-TestSha256 $good 0 $size
        $failing = New-FailingDisk 'f-mr-fail' -Size '16M'
        try {
            New-MirrorDevice frec $good, $failing.Device -RecoveryBytesPerSecond 4MB -Confirm:$false | Out-Null
            Start-Sleep -Seconds 1
            (Get-MirrorDevice frec).State | Should -Be 'Recovering'
            New-Item -ItemType File $failing.FailWrites | Out-Null
            $status = Wait-MirrorDevice frec -TimeoutSeconds 60 -WarningAction SilentlyContinue
            $status.State | Should -Be 'Degraded'
            @($status.Legs.Health) | Should -Be @('Alive', 'Dead')
            $before = $status.RecoveredRegions
            Get-TestSha256 $good 0 $size | Should -Be $data
            (Get-KcopydHost).ProcessId | Should -Be $HostId
            Remove-Item $failing.FailWrites
            Set-MirrorDevice frec -RecoveryBytesPerSecond 0
            Repair-MirrorDevice frec -Confirm:$false | Out-Null
            $status = Wait-MirrorDevice frec -TimeoutSeconds 120
            $status.State | Should -Be 'InSync'
            @($status.Legs.Health) | Should -Be @('Alive', 'Alive')
            Get-TestSha256 $failing.Device 0 $size | Should -Be $data
            Add-ReliabilityResult $Scenario 'mirror leg failing during recovery' ([ordered]@{
                    'faults injected' = 'writes to leg 2 fail (EIO) mid-resync'; 'regions recovered before the failure' = $before
                    'regions recovered in all, after Repair-MirrorDevice' = $status.RecoveredRegions; 'region size' = Format-Bytes $status.RegionSize
                    'bytes verified' = Format-Bytes (2 * $size)
                })
        } finally {
            Remove-Item $failing.FailWrites -ErrorAction Ignore
            Remove-MirrorDevice frec -Confirm:$false -ErrorAction Ignore
        }
    }

    It 'during writes: the writes complete on the other leg; repaired, the dead leg gets the regions written while it was out' {
        $size = 16MB
        $good = New-TestLoopDevice -Name 'f-mw-good.img' -Size $size
        $failing = New-FailingDisk 'f-mw-fail' -Size '16M'
        try {
            # Both legs zero: in sync from the start.
            New-MirrorDevice fwr $good, $failing.Device -NoSync -Confirm:$false | Out-Null
            $job = Start-RegionCopy $Source (Get-MirrorDevice fwr) -Length $size -BytesPerSecond 8MB -Confirm:$false -WarningAction SilentlyContinue
            Start-Sleep -Milliseconds 700
            New-Item -ItemType File $failing.FailWrites | Out-Null
            $ended = Wait-CopyJob -Id $job.Id -Timeout 60 -WarningAction SilentlyContinue
            $ended.State | Should -Be 'Completed' -Because 'a mirror goes on when one leg fails'
            $status = Get-MirrorDevice fwr
            $status.State | Should -Be 'Degraded'
            @($status.Legs.Health) | Should -Be @('Alive', 'Dead')
            Get-TestSha256 $good 0 $size | Should -Be (Get-TestSha256 $Source 0 $size)
            $outOfSync = $status.RegionCount - $status.InSyncRegions
            Remove-Item $failing.FailWrites
            Repair-MirrorDevice fwr -Confirm:$false | Out-Null
            $status = Wait-MirrorDevice fwr -TimeoutSeconds 120
            $status.State | Should -Be 'InSync'
            Get-TestSha256 $failing.Device 0 $size | Should -Be (Get-TestSha256 $Source 0 $size)
            Add-ReliabilityResult $Scenario 'mirror leg failing during writes' ([ordered]@{
                    'faults injected' = 'writes to leg 2 fail (EIO) mid-copy'; 'regions out of sync at the failure' = "$outOfSync of $($status.RegionCount)"
                    'regions recovered by the repair' = $status.RecoveredRegions; 'bytes verified' = Format-Bytes (2 * $size)
                })
        } finally {
            Remove-Item $failing.FailWrites -ErrorAction Ignore
            Remove-MirrorDevice fwr -Confirm:$false -ErrorAction Ignore
        }
    }

    It 'a leg hanging during recovery is timed out and marked Hung; the mirror goes on degraded on the other leg' {
        $size = 16MB
        $timeout = 3
        $good = New-TestLoopDevice -Name 'f-mhr-good.img' -Size $size
        Write-RandomRegion -Path $good -Offset 0 -Length $size -Seed 1507
        $data = Get-TestSha256 $good 0 $size
        $upper = Get-TestSha256 $good 8MB 8MB
        $disk = New-PausableDisk 'f-mhr-hung' -Size '16M'
        $check = New-TestLoopDevice -Name 'f-mhr-check.img' -Size $size
        $paused = $false
        try {
            # A resync held to 2 MB/s takes 8 s: the pause comes in the middle of it.
            New-MirrorDevice fhrec $good, $disk.Device -RecoveryBytesPerSecond 2MB -LegTimeoutSeconds $timeout -Confirm:$false | Out-Null
            Start-Sleep -Seconds 1
            (Get-MirrorDevice fhrec).State | Should -Be 'Recovering'
            Send-PauseControl $disk.Socket 'p' | Should -Be 'P'
            $paused = $true
            $clock = [Diagnostics.Stopwatch]::StartNew()
            Wait-Until { (Get-Leg fhrec $disk.Device).Health -eq 'Hung' } -Because 'the paused leg to be failed as Hung' -Seconds ($timeout + 30)
            $hungSeconds = $clock.Elapsed.TotalSeconds
            $status = Get-MirrorDevice fhrec
            $status.State | Should -Be 'Degraded'
            $status.LegTimeoutSeconds | Should -Be $timeout
            @($status.Legs.Health) | Should -Be @('Alive', 'Hung')
            (Get-Leg fhrec $disk.Device).IoInFlight | Should -BeGreaterThan 0 -Because 'the recovery write is still in the kernel'
            ($status.Warnings -join "`n") | Should -Match 'is hung'
            $recovered = $status.RecoveredRegions
            # Reads go to the healthy leg, the regions recovered before the hang too.
            (Start-RegionCopy $status $check -Wait -Confirm:$false -WarningAction SilentlyContinue).State | Should -Be 'Completed'
            Get-TestSha256 $check 0 $size | Should -Be $data
            # Writes too, the region whose recovery hung among them (let go when the leg was failed).
            $write = Start-RegionCopy $Source $status -Length 8MB -Wait -Confirm:$false -WarningAction SilentlyContinue
            $write.State | Should -Be 'Completed'
            (Start-RegionCopy $status $check -Wait -Confirm:$false -WarningAction SilentlyContinue).State | Should -Be 'Completed'
            Get-TestSha256 $check 0 8MB | Should -Be (Get-TestSha256 $Source 0 8MB)
            Get-TestSha256 $check 8MB 8MB | Should -Be $upper
            Get-TestSha256 $good 0 8MB | Should -Be (Get-TestSha256 $Source 0 8MB)
            (Get-Leg fhrec $disk.Device).Health | Should -Be 'Hung' -Because 'nothing re-adds a leg that still hangs'
            # Removing it is bounded while the leg still hangs; the legs are let go once its I/O returns.
            $clock.Restart()
            Remove-MirrorDevice fhrec -Confirm:$false -WarningVariable warned -WarningAction SilentlyContinue
            $removeSeconds = $clock.Elapsed.TotalSeconds
            $removeSeconds | Should -BeLessThan 15 -Because 'Remove-MirrorDevice waits at most 5 s for I/O in flight'
            ($warned -join "`n") | Should -Match 'has not returned'
            @(Get-MirrorDevice).Name | Should -Not -Contain 'fhrec'
            (Get-KcopydHost).ProcessId | Should -Be $HostId
            Add-ReliabilityResult $Scenario 'mirror leg hanging during recovery' ([ordered]@{
                    'faults injected' = 'leg 2 paused mid-resync (nbdkit pause filter)'; 'leg timeout' = "$timeout s"
                    'paused to Hung' = '{0:N1} s' -f $hungSeconds; 'regions recovered before the hang' = "$recovered of $($status.RegionCount)"
                    'mirror' = 'Degraded, reads and writes on leg 1'
                    'Remove-MirrorDevice while hung' = '{0:N1} s' -f $removeSeconds
                    'bytes verified' = Format-Bytes (2 * $size + 8MB)
                })
        } finally {
            if ($paused) { Send-PauseControl $disk.Socket 'r' | Out-Null }
            Remove-MirrorDevice fhrec -Force -Confirm:$false -ErrorAction Ignore -WarningAction SilentlyContinue
        }
    }

    It 'a leg hanging during writes is timed out and marked Hung; the writes complete on the other leg; repaired, it converges' {
        $size = 16MB
        $timeout = 3
        $good = New-TestLoopDevice -Name 'f-mhw-good.img' -Size $size
        $disk = New-PausableDisk 'f-mhw-hung' -Size '16M'
        $paused = $false
        try {
            # Both legs zero: in sync from the start.
            New-MirrorDevice fhwr $good, $disk.Device -NoSync -LegTimeoutSeconds $timeout -Confirm:$false | Out-Null
            # Held to 4 MB/s (4 s in all), so the pause comes in the middle of it.
            $job = Start-RegionCopy $Source (Get-MirrorDevice fhwr) -Length $size -BytesPerSecond 4MB -Confirm:$false -WarningAction SilentlyContinue
            Start-Sleep -Milliseconds 700
            Send-PauseControl $disk.Socket 'p' | Should -Be 'P'
            $paused = $true
            $clock = [Diagnostics.Stopwatch]::StartNew()
            Wait-Until { (Get-Leg fhwr $disk.Device).Health -eq 'Hung' } -Because 'the paused leg to be failed as Hung' -Seconds ($timeout + 30)
            $hungSeconds = $clock.Elapsed.TotalSeconds
            $ended = Wait-CopyJob -Id $job.Id -Timeout ($timeout + 30) -WarningAction SilentlyContinue
            $writesSeconds = $clock.Elapsed.TotalSeconds
            $ended.State | Should -Be 'Completed' -Because 'the writes are acknowledged from the other leg'
            $status = Get-MirrorDevice fhwr
            $status.State | Should -Be 'Degraded'
            @($status.Legs.Health) | Should -Be @('Alive', 'Hung')
            Get-TestSha256 $good 0 $size | Should -Be (Get-TestSha256 $Source 0 $size)
            $outOfSync = $status.RegionCount - $status.InSyncRegions
            $outOfSync | Should -BeGreaterThan 0 -Because 'the regions written after the hang lack leg 2'
            # While it hangs, Repair leaves it be, and says why.
            Repair-MirrorDevice fhwr -Confirm:$false -ErrorVariable failed -ErrorAction SilentlyContinue | Out-Null
            @($failed)[0].FullyQualifiedErrorId | Should -BeLike 'LegStillFailing,*'
            Send-PauseControl $disk.Socket 'r' | Should -Be 'R'
            $paused = $false
            Wait-Until { (Get-Leg fhwr $disk.Device).Health -eq 'Dead' } -Because 'the hung leg to answer and be dead'
            $late = (Get-Leg fhwr $disk.Device).LateAnswers
            $late | Should -BeGreaterThan 0
            Repair-MirrorDevice fhwr -Confirm:$false | Out-Null
            $status = Wait-MirrorDevice fhwr -TimeoutSeconds 120
            $status.State | Should -Be 'InSync'
            @($status.Legs.Health) | Should -Be @('Alive', 'Alive')
            Get-TestSha256 $disk.Device 0 $size | Should -Be (Get-TestSha256 $Source 0 $size)
            Add-ReliabilityResult $Scenario 'mirror leg hanging during writes' ([ordered]@{
                    'faults injected' = 'leg 2 paused mid-copy (nbdkit pause filter)'; 'leg timeout' = "$timeout s"
                    'paused to Hung' = '{0:N1} s' -f $hungSeconds; 'paused to the copy Completed' = '{0:N1} s' -f $writesSeconds
                    'regions out of sync after the writes' = "$outOfSync of $($status.RegionCount)"; 'late answers of the hung leg' = $late
                    'regions recovered by the repair' = $status.RecoveredRegions; 'bytes verified' = Format-Bytes (2 * $size)
                })
        } finally {
            if ($paused) { Send-PauseControl $disk.Socket 'r' | Out-Null }
            Remove-MirrorDevice fhwr -Force -Confirm:$false -ErrorAction Ignore -WarningAction SilentlyContinue
        }
    }
}
