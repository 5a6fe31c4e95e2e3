BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Manifest = Resolve-Path "$PSScriptRoot/../../Kcopyd.psd1"
}

AfterAll {
    Remove-TestLoopDevices   # stops the file's host first: its mirrors close, stacked ones first
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'A mirror whose host is killed again and again, with a leg failing at random moments' {
    It 'keeps every acknowledged write on both legs through 20 SIGKILLs of the host and assemblies from the log' {
        $seed = 20261202
        Write-Host "Crash loop seed: $seed"
        $random = [Random]::new($seed)
        $folder = Split-Path (New-TestImage -Name 'loop-marker' -Size 0)
        $trigger = Join-Path $folder 'wfail'
        # The first leg, the default one, fails its writes while $trigger exists (nbdkit's error filter); it is slow
        # enough that writes are always in flight when the kill comes.
        $faulty = New-TestNbdLoopDevice -Name 'loop-faulty' -Nbdkit '--filter=error', '--filter=delay', 'memory', '16M', 'wdelay=10ms',
            'error-pwrite=EIO', 'error-pwrite-rate=100%', "error-pwrite-file=$trigger"
        $good = New-TestLoopDevice -Name 'loop-good.img' -Size 16MB
        $legs = @($faulty, $good)
        $data = New-TestLoopDevice -Name 'loop-data.img' -Size 64MB
        Write-RandomRegion -Path $data -Offset 0 -Length 64MB -Seed 140
        $log = Join-Path $folder 'loop.log'
        New-MirrorDevice loop0 $legs -LogPath $log -Confirm:$false | Out-Null
        (Wait-MirrorDevice loop0 -TimeoutSeconds 120).State | Should -Be 'InSync'
        Remove-MirrorDevice loop0 -Confirm:$false

        $totalInFlight = 0
        $summary = foreach ($run in 1..20) {
            $acks = Join-Path $folder "acks-$run"
            $ready = Join-Path $folder "ready-$run"
            $runSeed = $random.Next()
            $failLeg = $run % 2 -eq 0
            # Every third run starts without a log over the legs the last check left identical: a full resync
            # from the first leg runs, so the kill (and the leg's failure) land in the middle of a recovery.
            $reset = $run % 3 -eq 0
            if ($reset) { Remove-Item $log }
            # The writer re-creates the mirror from its log in the host (its recovery throttled, so kills also land
            # during a resync), then writes 64 KiB blocks of $data into random blocks of the mirror until it is killed, 16 in
            # flight but never two on one block. It notes each write before it is sent (S) and once it is
            # acknowledged (A); a failed write is noted too (F): it was not acknowledged.
            $writer = @"
`$ErrorActionPreference = 'Stop'
Import-Module '$Manifest'
`$mirror = New-MirrorDevice crash '$faulty', '$good' -LogPath '$log' -RecoveryBytesPerSecond 4MB -Confirm:`$false
[IO.File]::WriteAllText('$ready', '')
`$random = [Random]::new($runSeed)
`$inFlight = [Collections.Generic.Queue[object]]::new()
`$busy = [Collections.Generic.HashSet[long]]::new()
`$notes = [IO.StreamWriter]::new('$acks')
`$notes.AutoFlush = `$true
while (`$true) {
    while (`$inFlight.Count -lt 16) {
        `$to = [long]`$random.Next(256) * 64KB
        if (-not `$busy.Add(`$to)) { continue }
        `$from = [long]`$random.Next(1024) * 64KB
        `$notes.WriteLine("S `$to `$from")
        `$inFlight.Enqueue((Start-RegionCopy -Source '$data' -Destination `$mirror -SourceOffset `$from -DestinationOffset `$to -Length 64KB -Confirm:`$false))
    }
    `$job = Wait-CopyJob -Id `$inFlight.Dequeue().Id
    `$notes.WriteLine("`$(if (`$job.State -eq 'Completed') { 'A' } else { 'F' }) `$(`$job.DestinationOffset[0]) `$(`$job.SourceOffset)")
    [void]`$busy.Remove(`$job.DestinationOffset[0])
}
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
                # SIGKILL to the host, which holds the mirror and runs the writes; then to the writer, left without it.
                $killed = (Get-KcopydHost).ProcessId
                Stop-Process -Id $killed -Force
                $process.Kill($true)
                $process.WaitForExit()
                Remove-Item $trigger -ErrorAction Ignore   # the leg works again for the assembly
            }
            # What each block may hold: its last acknowledged write, or a write sent after it that never was (in
            # flight at the kill, or failed). Blocks never acknowledged in this run are not checked.
            $allowed = @{}
            $acknowledged = 0
            $sent = 0
            $failed = 0
            foreach ($line in @(if (Test-Path $acks) { Get-Content $acks })) {
                $kind, $to, $from = $line -split ' '
                if ($null -eq $from) { continue }   # a note cut by the kill
                switch ($kind) {
                    'S' { $sent++; if ($allowed.ContainsKey($to)) { $allowed[$to].Add([long]$from) } }
                    'A' { $allowed[$to] = [Collections.Generic.List[long]]@([long]$from); $acknowledged++ }
                    'F' { $failed++ }
                }
            }

            # The next cmdlet starts a host, which assembles the mirror from its definition and its log.
            Get-MirrorDevice crash | Out-Null
            (Get-KcopydHost).ProcessId | Should -Not -Be $killed
            try {
                $status = Wait-MirrorDevice crash -TimeoutSeconds 120
                $status.State | Should -Be 'InSync' -Because "run $run assembled from its log must resync to the end"
                $status.Legs.Health | Should -Be @('Alive', 'Alive')
            } finally {
                Remove-MirrorDevice crash -Confirm:$false
            }
            foreach ($to in $allowed.Keys) {
                $expected = @($allowed[$to] | ForEach-Object { Get-TestSha256 $data $_ 64KB })
                foreach ($leg in $legs) {
                    Get-TestSha256 $leg ([long]$to) 64KB | Should -BeIn $expected -Because "run $run (seed $runSeed) acknowledged a write at $to"
                }
            }
            Get-TestSha256 $good 0 16MB | Should -Be (Get-TestSha256 $faulty 0 16MB) -Because "run $run must leave the legs identical"
            $inFlight = $sent - $acknowledged - $failed
            $totalInFlight += $inFlight
            "run $run`:$(if ($reset) { ' a full resync,' }) killed after $killAfter ms$(if ($failLeg) { ", leg failed at $failAt ms" }), $acknowledged acknowledged, $failed failed, $inFlight in flight at the kill; default after: $($status.DefaultLeg)"
        }
        $summary | ForEach-Object { Write-Host $_ }
        @($summary).Count | Should -Be 20
        $totalInFlight | Should -BeGreaterThan 20 -Because 'the kills must land with writes in flight'
    }
}
