# Start-RegionCopy -MapPath: a copy killed in any way (its host by SIGKILL, the pwsh that started it) and started
# again with its map copies only what the map does not hold, and every destination byte ends up the source's.

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Length = 32MB
    $script:Chunk = 2MB          # the default client's sub-job, the map's chunk
    $script:InFlight = 4         # the default client's sub-jobs in flight
    $script:Rate = 8MB           # the killed copy's -BytesPerSecond: a 32 MiB copy takes 4 s, so kills land mid-copy
    $script:Src = New-TestLoopDevice -Name 'resume-src.img' -Size $Length
    $script:Dst = New-TestLoopDevice -Name 'resume-dst.img' -Size $Length
    $script:Dst2 = New-TestLoopDevice -Name 'resume-dst2.img' -Size $Length
    Write-RandomRegion -Path $Src -Offset 0 -Length $Length -Seed 1401
    $script:SourceHash = Get-TestSha256 -Path $Src -Offset 0 -Length $Length
    $script:Folder = Split-Path (New-TestImage -Name 'resume.marker' -Size 0)
    $script:Manifest = Resolve-Path "$PSScriptRoot/../../Kcopyd.psd1"
}

AfterAll {
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'A copy with a map, killed and started again' {
    It 'copies every byte after 20 SIGKILLs of its host at random points, and on resume only the rest plus the chunks in flight' {
        $seed = 20261414
        Write-Host "Resume kill seed: $seed"
        $random = [Random]::new($seed)
        $map = Join-Path $Folder 'kill.map'
        $fromMap = 0
        foreach ($run in 1..20) {
            Clear-Region $Dst 0 $Length -Confirm:$false | Out-Null
            Remove-Item $map -ErrorAction Ignore
            $job = Start-RegionCopy $Src $Dst -Length $Length -BytesPerSecond $Rate -MapPath $map -Confirm:$false
            Start-Sleep -Milliseconds $random.Next(200, 3600)
            $seen = (Get-CopyJob -Id $job.Id).BytesCopied
            $killed = (Get-KcopydHost).ProcessId
            $watch = [Diagnostics.Stopwatch]::StartNew()
            kill -9 $killed
            $watch.Stop()
            $deadline = [DateTime]::UtcNow.AddSeconds(20)
            while (Get-Process -Id $killed -ErrorAction Ignore) {
                if ([DateTime]::UtcNow -gt $deadline) { throw "Run $($run): host $killed did not die" }
                Start-Sleep -Milliseconds 20
            }

            # The same copy again (the cmdlet starts a new host), at full speed.
            $resumed = Start-RegionCopy $Src $Dst -Length $Length -MapPath $map -Wait -Confirm:$false
            Update-TestHost | Out-Null
            $resumed.State | Should -Be 'Completed' -Because "run $run"
            Get-TestSha256 -Path $Dst -Offset 0 -Length $Length | Should -Be $SourceHash -Because "run ${run}: every byte is the source's"
            ($resumed.BytesFromMap + $resumed.BytesCopied) | Should -Be $Length -Because "run $run"
            $resumed.BytesFromMap % $Chunk | Should -Be 0
            $resumed.BytesCopied | Should -BeLessOrEqual ($Length - $resumed.BytesFromMap + $InFlight * $Chunk) -Because "run ${run}: the resume copies the rest plus at most the chunks in flight"
            # What the killed copy had finished is in the map, but for the chunks in flight and the last flush
            # interval (1 s, and the time the kill took) of copying at its rate.
            $lost = $seen - $resumed.BytesFromMap
            $lost | Should -BeLessOrEqual ($InFlight * $Chunk + $Rate * (1.5 + $watch.Elapsed.TotalSeconds)) -Because "run ${run}: $seen bytes were copied before the kill"
            Write-Host "  run $($run): $seen copied before the kill, $($resumed.BytesFromMap) from the map"
            if ($resumed.BytesFromMap -gt 0) { $fromMap++ }
        }
        $fromMap | Should -BeGreaterOrEqual 10 -Because 'most kills land after the map was first flushed'
    }

    It 'goes on in the host when the pwsh that started it is killed, and a second run with the complete map copies nothing' {
        $map = Join-Path $Folder 'child.map'
        Clear-Region $Dst 0 $Length -Confirm:$false | Out-Null
        $command = "Import-Module '$Manifest'; Start-RegionCopy '$Src' '$Dst' -Length $Length -BytesPerSecond 16MB -MapPath '$map' -Wait -Confirm:`$false"
        $start = [Diagnostics.ProcessStartInfo]::new('dotnet')
        foreach ($arg in 'pwsh', '-NoProfile', '-NonInteractive', '-Command', $command) { $start.ArgumentList.Add($arg) }
        $start.RedirectStandardOutput = $true
        $child = [Diagnostics.Process]::Start($start)
        try {
            $deadline = [DateTime]::UtcNow.AddSeconds(60)
            do {
                if ([DateTime]::UtcNow -gt $deadline) { throw 'the child pwsh did not start its copy' }
                Start-Sleep -Milliseconds 50
                $job = Get-CopyJob | Where-Object MapPath -eq $map
            } until ($job -and $job.BytesCopied -gt 0)
            $child.Kill($true)
            $child.WaitForExit()
        } finally { if (-not $child.HasExited) { $child.Kill($true) }; $child.Dispose() }

        (Get-CopyJob -Id $job.Id).State | Should -Be 'Running' -Because 'the copy belongs to the host, not to the pwsh'
        $ended = Wait-CopyJob -Id $job.Id -TimeoutSeconds 60
        $ended.State | Should -Be 'Completed'
        Get-TestSha256 -Path $Dst -Offset 0 -Length $Length | Should -Be $SourceHash

        $again = Start-RegionCopy $Src $Dst -Length $Length -MapPath $map -Wait -Confirm:$false
        $again.State | Should -Be 'Completed'
        $again.BytesFromMap | Should -Be $Length
        $again.BytesCopied | Should -Be 0
    }

    It 'refuses the map of another copy as MapMismatch and writes nothing' {
        $map = Join-Path $Folder 'other.map'
        Start-RegionCopy $Src $Dst -Length $Length -MapPath $map -Wait -Confirm:$false | Out-Null
        Write-RandomRegion -Path $Dst2 -Offset 0 -Length $Length -Seed 1402
        $before = Get-TestSha256 -Path $Dst2 -Offset 0 -Length $Length
        $mapBefore = (Get-FileHash $map).Hash
        $err = $null
        try { Start-RegionCopy $Src $Dst2 -Length $Length -MapPath $map -Wait -Confirm:$false -ErrorAction Stop } catch { $err = $_ }
        $err | Should -Not -BeNullOrEmpty
        $err.FullyQualifiedErrorId | Should -BeLike 'MapMismatch,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err.Exception.Message | Should -BeLike '*destination 1*'
        Get-TestSha256 -Path $Dst2 -Offset 0 -Length $Length | Should -Be $before
        (Get-FileHash $map).Hash | Should -Be $mapBefore
    }

    It 'creates the map 0600 and not at all under -WhatIf' {
        $map = Join-Path $Folder 'whatif.map'
        Start-RegionCopy $Src $Dst -Length 1MB -MapPath $map -WhatIf | Out-Null
        Test-Path $map | Should -BeFalse
        Start-RegionCopy $Src $Dst -Length 1MB -MapPath $map -Wait -Confirm:$false | Out-Null
        (stat -c '%a' $map) | Should -Be '600'
    }
}
