# Crashes: the host killed with SIGKILL at random points (a fixed, printed seed) while a writer in another pwsh
# writes through a mirror with a persistent log, a leg failing at random moments, every third round a full resync
# from a fresh log. After each restart the mirror assembles from its log and converges, every acknowledged write is
# on both legs, and the regions the recovery needed are recorded per round. Adapted from
# tests/pester/MirrorCrashLoop.Tests.ps1 (20 kills there, in the default suite); here the count follows the scale.
#
# Each round's work is a list of participants: the mirror writer now, a mapped copy (Start-RegionCopy -MapPath) once
# that is merged. A participant gives the code its writer child runs before the kill (Start, a string run in the
# child, which may use $Manifest, $folder and $run) and the check after the restart (Check, a scriptblock given the
# round); see $MappedCopy below for where it plugs in.
BeforeAll {
    Import-Module "$PSScriptRoot/../pester/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/ReliabilityReport.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Manifest = Resolve-Path "$PSScriptRoot/../../Kcopyd.psd1"
    $script:Scenario = 'crash'
    Clear-ReliabilityRecord $Scenario 'Crashes: SIGKILL of the host during mirror writes and recovery'
    $script:Kills = Select-ReliabilityScale -Quick 3 -Full 24
    $script:Seed = 20261203
}

AfterAll {
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'The host killed again and again' -Tag 'Reliability' {
    It 'keeps every acknowledged write on both legs and converges after each SIGKILL' {
        Write-Host "Crash seed: $Seed, $Kills kills"
        $random = [Random]::new($Seed)
        $folder = Split-Path (New-TestImage -Name 'crash-marker' -Size 0)
        $trigger = Join-Path $folder 'wfail'
        $faulty = New-TestNbdLoopDevice -Name 'crash-faulty' -Nbdkit '--filter=error', '--filter=delay', 'memory', '16M', 'wdelay=10ms',
            'error-pwrite=EIO', 'error-pwrite-rate=100%', "error-pwrite-file=$trigger"
        $good = New-TestLoopDevice -Name 'crash-good.img' -Size 16MB
        $legs = @($faulty, $good)
        $data = New-TestLoopDevice -Name 'crash-data.img' -Size 64MB
        Write-RandomRegion -Path $data -Offset 0 -Length 64MB -Seed 160
        $log = Join-Path $folder 'crash.log'
        New-MirrorDevice crash $legs -LogPath $log -Confirm:$false | Out-Null
        (Wait-MirrorDevice crash -TimeoutSeconds 120).State | Should -Be 'InSync'
        Remove-MirrorDevice crash -Confirm:$false

        # The mirror writer: re-creates the mirror from its log (recovery throttled, so kills land during a resync),
        # then writes 64 KiB blocks of $data into random blocks of the mirror, 16 in flight but never two on one
        # block, noting each write before it is sent (S), once acknowledged (A) or failed (F).
        $mirrorWriter = @{
            Start = {
                param($run, $runSeed)
                @"
`$mirror = New-MirrorDevice crash '$faulty', '$good' -LogPath '$log' -RecoveryBytesPerSecond 4MB -Confirm:`$false
[IO.File]::WriteAllText('$(Join-Path $folder "ready-$run")', '')
`$random = [Random]::new($runSeed)
`$inFlight = [Collections.Generic.Queue[object]]::new()
`$busy = [Collections.Generic.HashSet[long]]::new()
`$notes = [IO.StreamWriter]::new('$(Join-Path $folder "acks-$run")')
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
            }
        }
        # MAP: the mapped copy joins each round here once -MapPath is merged: its Start begins
        # Start-RegionCopy -MapPath (before the mirror writer's endless loop, so put it first in $participants), its
        # Check resumes the copy from the map after the restart, waits for it and compares the destination with the
        # source by hash, and records BytesFromMap. Until then the It below is pending.
        $participants = @($mirrorWriter)

        $rounds = [Collections.Generic.List[object]]::new()
        foreach ($run in 1..$Kills) {
            $runSeed = $random.Next()
            $failLeg = $run % 2 -eq 0
            $reset = $run % 3 -eq 0
            if ($reset) { Remove-Item $log }
            $ready = Join-Path $folder "ready-$run"
            $acks = Join-Path $folder "acks-$run"
            $writer = "`$ErrorActionPreference = 'Stop'`nImport-Module '$Manifest'`n" + (@($participants | ForEach-Object { & $_.Start $run $runSeed }) -join "`n")
            $start = [Diagnostics.ProcessStartInfo]::new('dotnet')
            foreach ($arg in 'pwsh', '-NoProfile', '-NonInteractive', '-Command', $writer) { $start.ArgumentList.Add($arg) }
            $process = [Diagnostics.Process]::Start($start)
            $killAfter = $random.Next(200, 2500)
            $failAt = $random.Next(0, $killAfter)
            try {
                $deadline = [DateTime]::UtcNow.AddSeconds(60)
                while (-not (Test-Path $ready)) {
                    if ($process.HasExited) { throw "Round $($run): the writer ended early with exit code $($process.ExitCode)" }
                    if ([DateTime]::UtcNow -gt $deadline) { throw "Round $($run): the writer did not start in time" }
                    Start-Sleep -Milliseconds 20
                }
                $clock = [Diagnostics.Stopwatch]::StartNew()
                if ($failLeg) {
                    Start-Sleep -Milliseconds $failAt
                    New-Item -ItemType File $trigger -Force | Out-Null
                }
                Start-Sleep -Milliseconds ([Math]::Max(0, $killAfter - $clock.ElapsedMilliseconds))
            } finally {
                $killed = (Get-KcopydHost).ProcessId
                Stop-Process -Id $killed -Force
                $process.Kill($true)
                $process.WaitForExit()
                Remove-Item $trigger -ErrorAction Ignore
            }
            $allowed = @{}
            $acknowledged = 0; $sent = 0; $failed = 0
            foreach ($line in @(if (Test-Path $acks) { Get-Content $acks })) {
                $kind, $to, $from = $line -split ' '
                if ($null -eq $from) { continue }   # a note cut by the kill
                switch ($kind) {
                    'S' { $sent++; if ($allowed.ContainsKey($to)) { $allowed[$to].Add([long]$from) } }
                    'A' { $allowed[$to] = [Collections.Generic.List[long]]@([long]$from); $acknowledged++ }
                    'F' { $failed++ }
                }
            }

            # The next cmdlet starts a host, which assembles the mirror from its definition and its log: the regions
            # the log calls out of sync then are what this recovery needs.
            $assembled = Get-MirrorDevice crash
            (Get-KcopydHost).ProcessId | Should -Not -Be $killed
            try {
                $status = Wait-MirrorDevice crash -TimeoutSeconds 120
                $status.State | Should -Be 'InSync' -Because "round $run assembled from its log must resync to the end"
                $status.Legs.Health | Should -Be @('Alive', 'Alive')
            } finally { Remove-MirrorDevice crash -Confirm:$false }
            foreach ($to in $allowed.Keys) {
                $expected = @($allowed[$to] | ForEach-Object { Get-TestSha256 $data $_ 64KB })
                foreach ($leg in $legs) {
                    Get-TestSha256 $leg ([long]$to) 64KB | Should -BeIn $expected -Because "round $run (seed $runSeed) acknowledged a write at $to"
                }
            }
            Get-TestSha256 $good 0 16MB | Should -Be (Get-TestSha256 $faulty 0 16MB) -Because "round $run must leave the legs identical"
            foreach ($participant in $participants) { if ($participant.Check) { & $participant.Check $run } }
            $round = [pscustomobject]@{
                Run = $run; Reset = $reset; KillAfter = $killAfter; FailAt = $(if ($failLeg) { $failAt }); Acknowledged = $acknowledged
                Failed = $failed; InFlight = $sent - $acknowledged - $failed
                OutOfSyncAtAssembly = $assembled.RegionCount - $assembled.InSyncRegions; Recovered = $status.RecoveredRegions; Regions = $status.RegionCount
            }
            $rounds.Add($round)
            Write-Host ("round {0}:{1} killed after {2} ms{3}, {4} acknowledged, {5} failed, {6} in flight; {7} of {8} regions out of sync at assembly, {9} recovered" -f
                $run, $(if ($reset) { ' a full resync,' }), $killAfter, $(if ($failLeg) { ", leg failed at $failAt ms" }), $acknowledged, $failed,
                $round.InFlight, $round.OutOfSyncAtAssembly, $round.Regions, $round.Recovered)
        }
        $rounds.Count | Should -Be $Kills
        ($rounds | Measure-Object InFlight -Sum).Sum | Should -BeGreaterThan $Kills -Because 'the kills must land with writes in flight'
        $recovered = @($rounds | ForEach-Object Recovered)
        Add-ReliabilityResult $Scenario 'mirror writes with a persistent log, SIGKILL at random points' ([ordered]@{
                'seed' = $Seed; 'kills' = $Kills; 'leg failures injected' = @($rounds | Where-Object FailAt -ne $null).Count
                'full resyncs (fresh log)' = @($rounds | Where-Object Reset).Count
                'acknowledged writes verified' = [long]($rounds | Measure-Object Acknowledged -Sum).Sum
                'writes in flight at the kills' = [long]($rounds | Measure-Object InFlight -Sum).Sum
                'regions' = "$($assembled.RegionCount) of $(Format-Bytes $assembled.RegionSize)"
                'out of sync at each assembly' = (@($rounds | ForEach-Object OutOfSyncAtAssembly) -join ' ')
                'regions each recovery copied' = ($recovered -join ' ')
                'most copied after a kill with the log (no reset)' = [long](@($rounds | Where-Object { -not $_.Reset } | Measure-Object Recovered -Maximum).Maximum)
                'bytes verified per round' = Format-Bytes (2 * 16MB)
            })
    }

    It 'mapped copies resume from their map after each kill and finish correctly' {
        # Filled after -MapPath merges: a participant in the round above (see the MAP: note), recorded here.
        Add-ReliabilityPending $Scenario 'mapped copies resumed after each kill' 'needs -MapPath'
        Set-ItResult -Skipped -Because 'needs -MapPath'
    }
}
