BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    $script:Manifest = Resolve-Path "$PSScriptRoot/../../Kcopyd.psd1"

    function New-MirrorWhenFree([string] $Name, [string[]] $Legs, [string] $Log) {
        # A killed process lets go of its legs and its log only once its last I/O has ended.
        $deadline = [DateTime]::UtcNow.AddSeconds(30)
        while ($true) {
            try { return New-MirrorDevice $Name $Legs -LogPath $Log -Confirm:$false -ErrorAction Stop }
            catch {
                $busy = $_.FullyQualifiedErrorId -like 'LegInUse,*' -or $_.FullyQualifiedErrorId -like 'DeviceInUse,*' -or $_.FullyQualifiedErrorId -like 'LogInUse,*'
                if (-not $busy -or [DateTime]::UtcNow -gt $deadline) { throw }
            }
            Start-Sleep -Milliseconds 100
        }
    }
}

AfterAll {
    Remove-Module Kcopyd -ErrorAction Ignore
    Remove-TestLoopDevices
}

Describe 'A mirror whose writer is killed again and again, with a leg failing at random moments' {
    It 'keeps every acknowledged write on both legs through 20 SIGKILLs and re-creations from the log' {
        $seed = 20261202
        Write-Host "Crash loop seed: $seed"
        $random = [Random]::new($seed)
        $folder = Split-Path (New-TestImage -Name 'loop-marker' -Size 0)
        $trigger = Join-Path $folder 'wfail'
        # The first leg, the default one, fails its writes while $trigger exists (nbdkit's error filter); it is slow
        # enough that writes are always in flight when the kill comes.
        $faulty = New-TestNbdLoopDevice -Name 'loop-faulty' -Nbdkit '--filter=error', '--filter=delay', 'memory', '16M', 'wdelay=5ms',
            'error-pwrite=EIO', 'error-pwrite-rate=100%', "error-pwrite-file=$trigger"
        $good = New-TestLoopDevice -Name 'loop-good.img' -Size 16MB
        $legs = @($faulty, $good)
        $data = New-TestLoopDevice -Name 'loop-data.img' -Size 64MB
        Write-RandomRegion -Path $data -Offset 0 -Length 64MB -Seed 140
        $log = Join-Path $folder 'loop.log'
        New-MirrorDevice loop0 $legs -LogPath $log -Confirm:$false | Out-Null
        (Wait-MirrorDevice loop0 -TimeoutSeconds 120).State | Should -Be 'InSync'
        Remove-MirrorDevice loop0 -Confirm:$false

        $summary = foreach ($run in 1..20) {
            $acks = Join-Path $folder "acks-$run"
            $ready = Join-Path $folder "ready-$run"
            $runSeed = $random.Next()
            $failLeg = $run % 2 -eq 0
            # The writer re-creates the mirror from its log (its recovery throttled, so kills also land during a
            # resync), then writes 64 KiB blocks of $data into distinct blocks of the mirror, 16 in flight, noting
            # each one acknowledged. A failed write is not noted: it was not acknowledged.
            $writer = @"
`$ErrorActionPreference = 'Stop'
Import-Module '$Manifest'
`$mirror = New-MirrorDevice crash '$faulty', '$good' -LogPath '$log' -RecoveryBytesPerSecond 4MB -Confirm:`$false
[IO.File]::WriteAllText('$ready', '')
`$random = [Random]::new($runSeed)
`$blocks = [int[]](0..255 | Sort-Object { `$random.Next() })
`$inFlight = [Collections.Generic.Queue[object]]::new()
`$next = 0
while (`$next -lt `$blocks.Length -or `$inFlight.Count -gt 0) {
    while (`$inFlight.Count -lt 16 -and `$next -lt `$blocks.Length) {
        `$to = [long]`$blocks[`$next++] * 64KB
        `$from = [long]`$random.Next(1024) * 64KB
        `$inFlight.Enqueue((Start-RegionCopy -Source '$data' -Destination `$mirror -SourceOffset `$from -DestinationOffset `$to -Length 64KB -Confirm:`$false))
    }
    `$job = `$inFlight.Dequeue()
    `$job.WaitAsync().Wait()
    if (`$job.State -eq 'Completed') { [IO.File]::AppendAllText('$acks', "`$(`$job.DestinationOffset[0]) `$(`$job.SourceOffset)``n") }
}
Start-Sleep -Seconds 60
"@
            $start = [Diagnostics.ProcessStartInfo]::new('dotnet')
            foreach ($arg in 'pwsh', '-NoProfile', '-NonInteractive', '-Command', $writer) { $start.ArgumentList.Add($arg) }
            $process = [Diagnostics.Process]::Start($start)
            $killAfter = $random.Next(200, 2500)
            $failAt = $random.Next(0, $killAfter)
            try {
                $deadline = [DateTime]::UtcNow.AddSeconds(60)
                while (-not (Test-Path $ready)) {
                    if ($process.HasExited) { throw "Run $($run): the writer ended early with exit code $($process.ExitCode)" }
                    if ([DateTime]::UtcNow -gt $deadline) { throw "Run $($run): the writer did not start in time" }
                    Start-Sleep -Milliseconds 20
                }
                $clock = [Diagnostics.Stopwatch]::StartNew()
                if ($failLeg) {
                    Start-Sleep -Milliseconds $failAt
                    New-Item -ItemType File $trigger -Force | Out-Null
                }
                Start-Sleep -Milliseconds ([Math]::Max(0, $killAfter - $clock.ElapsedMilliseconds))
            } finally {
                # SIGKILL to the whole tree: `dotnet pwsh` is the muxer and the pwsh it starts, which holds the mirror.
                $process.Kill($true)
                $process.WaitForExit()
                Remove-Item $trigger -ErrorAction Ignore   # the leg works again for the re-creation
            }
            $acknowledged = if (Test-Path $acks) { @(Get-Content $acks | ForEach-Object { , ([long[]]($_ -split ' ')) }) } else { @() }

            $mirror = New-MirrorWhenFree "check$run" $legs $log
            try {
                $status = Wait-MirrorDevice "check$run" -TimeoutSeconds 120
                $status.State | Should -Be 'InSync' -Because "run $run re-created from its log must resync to the end"
                $status.Legs.Health | Should -Be @('Alive', 'Alive')
            } finally {
                Remove-MirrorDevice "check$run" -Confirm:$false
            }
            foreach ($ack in $acknowledged) {
                $expected = Get-RegionHash $data $ack[1] 64KB
                foreach ($leg in $legs) {
                    Get-RegionHash $leg $ack[0] 64KB | Should -Be $expected -Because "run $run (seed $runSeed) acknowledged the write at $($ack[0])"
                }
            }
            Get-RegionHash $good 0 16MB | Should -Be (Get-RegionHash $faulty 0 16MB) -Because "run $run must leave the legs identical"
            "run $run`: killed after $killAfter ms$(if ($failLeg) { ", leg failed at $failAt ms" }), $($acknowledged.Count) acknowledged, default $($status.DefaultLeg)"
        }
        $summary | ForEach-Object { Write-Host $_ }
        @($summary).Count | Should -Be 20
    }
}
