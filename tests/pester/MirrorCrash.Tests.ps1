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

Describe 'A mirror with a persistent log, after its host is killed' {
    It 'is assembled again by the next cmdlet, resyncs only the regions the log marks dirty, and keeps every acknowledged write on every leg' {
        $regionCount = 32
        # The second leg takes 20 ms per write, so writes are always in flight when the kill comes.
        $legs = @(
            New-TestLoopDevice -Name 'crash-1.img' -Size 16MB
            New-TestNbdLoopDevice -Name 'crash-2' -Nbdkit '--filter=delay', 'memory', '16M', 'wdelay=20ms'
        )
        $data = New-TestLoopDevice -Name 'crash-data.img' -Size 16MB
        Write-RandomRegion -Path $data -Offset 0 -Length 16MB -Seed 120
        $folder = Split-Path (New-TestImage -Name 'crash-marker' -Size 0)
        $log = Join-Path $folder 'crash.log'
        $acks = Join-Path $folder 'crash.acks'
        New-MirrorDevice crash $legs -NoSync -LogPath $log -Confirm:$false | Out-Null
        $killed = (Get-KcopydHost).ProcessId

        # The writer: 64 KiB writes into random regions through the mirror, 16 in flight at any time, each noted
        # once acknowledged (its job Completed). A kill then always finds writes in flight and regions dirty.
        $writer = @"
`$ErrorActionPreference = 'Stop'
Import-Module '$Manifest'
`$mirror = Get-MirrorDevice crash
`$random = [Random]::new(121)
`$inFlight = [Collections.Generic.Queue[object]]::new()
while (`$true) {
    while (`$inFlight.Count -lt 16) {
        `$offset = `$random.Next($regionCount) * 512KB + `$random.Next(8) * 64KB
        `$inFlight.Enqueue((Start-RegionCopy -Source '$data' -Destination `$mirror -SourceOffset `$offset -DestinationOffset `$offset -Length 64KB -Confirm:`$false))
    }
    `$job = Wait-CopyJob -Id `$inFlight.Dequeue().Id
    if (`$job.State -ne 'Completed') { exit 3 }
    [IO.File]::AppendAllText('$acks', "`$(`$job.DestinationOffset[0])``n")
}
"@
        $start = [Diagnostics.ProcessStartInfo]::new('dotnet')
        foreach ($arg in 'pwsh', '-NoProfile', '-NonInteractive', '-Command', $writer) { $start.ArgumentList.Add($arg) }
        $start.WorkingDirectory = Split-Path $Manifest
        $process = [Diagnostics.Process]::Start($start)
        try {
            $deadline = [DateTime]::UtcNow.AddSeconds(120)
            while (-not (Test-Path $acks) -or @(Get-Content $acks).Count -lt 40) {
                if ($process.HasExited) { throw "The writer ended early with exit code $($process.ExitCode)" }
                if ([DateTime]::UtcNow -gt $deadline) { throw 'The writer acknowledged too few writes in time' }
                Start-Sleep -Milliseconds 100
            }
        } finally {
            # SIGKILL to the host, which holds the mirror and runs the writes; then the writer, left without it.
            Stop-Process -Id $killed -Force
            $process.Kill($true)
            $process.WaitForExit()
        }
        $acknowledged = @(Get-Content $acks | ForEach-Object { [long]$_ }) | Sort-Object -Unique
        $dirty = $regionCount - [Kcopyd.Engine.Mirror.DiskDirtyLog]::CountInSync($log, $regionCount)
        Write-Host "The log marks $dirty of $regionCount regions out of sync after the kill; $($acknowledged.Count) writes were acknowledged."
        $dirty | Should -BeGreaterThan 0
        $dirty | Should -BeLessThan $regionCount

        # The next cmdlet starts a host, which assembles the mirror from its definition and its log.
        $mirror = Get-MirrorDevice crash
        (Get-KcopydHost).ProcessId | Should -Not -Be $killed
        try {
            $mirror.RegionCount - $mirror.InSyncRegions | Should -BeLessOrEqual $dirty
            $status = Wait-MirrorDevice crash -TimeoutSeconds 120
            $status.State | Should -Be 'InSync'
            $status.RecoveredRegions | Should -Be $dirty
        } finally {
            Remove-MirrorDevice crash -Confirm:$false
        }
        foreach ($offset in $acknowledged) {
            $expected = Get-TestSha256 $data $offset 64KB
            foreach ($leg in $legs) { Get-TestSha256 $leg $offset 64KB | Should -Be $expected -Because "the write at $offset was acknowledged" }
        }
        Get-TestSha256 $legs[1] 0 16MB | Should -Be (Get-TestSha256 $legs[0] 0 16MB)
    }
}
