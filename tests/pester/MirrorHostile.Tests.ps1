# What a hostile first-time user found: each test is one finding, on real failing or hanging devices.
BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
}

AfterAll {
    Remove-TestLoopDevices   # stops the file's host first: its mirrors close, stacked ones first
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe '-ResetLog on a log that still reads' {
    It 'refuses to resync from a stale leg given first, and the acknowledged writes stay' {
        $good = New-TestLoopDevice -Name 'h1-good.img' -Size 16MB
        $stale = New-FailingDisk 'h1-stale'
        $v1 = New-TestLoopDevice -Name 'h1-v1.img' -Size 16MB
        $v2 = New-TestLoopDevice -Name 'h1-v2.img' -Size 16MB
        Write-RandomRegion -Path $v1 -Offset 0 -Length 16MB -Seed 901
        Write-RandomRegion -Path $v2 -Offset 0 -Length 16MB -Seed 902
        $acknowledged = Get-TestSha256 $v2 0 16MB
        $log = Join-Path (Split-Path (New-TestImage -Name 'h1.marker' -Size 0)) 'h1.log'
        try {
            $m = New-MirrorDevice h1 $good, $stale.Device -LogPath $log -NoSync -Confirm:$false
            Start-RegionCopy $v1 $m -Wait -Confirm:$false | Out-Null
            New-Item -ItemType File $stale.FailWrites | Out-Null
            Start-RegionCopy $v2 (Get-MirrorDevice h1) -Wait -Confirm:$false -WarningAction SilentlyContinue | Out-Null
            Remove-MirrorDevice h1 -Confirm:$false
            Remove-Item $stale.FailWrites

            # The admin gives the legs in the wrong order and reaches for -ResetLog: the reset would copy the stale
            # leg over the only one holding the acknowledged writes.
            { New-MirrorDevice h1 $stale.Device, $good -LogPath $log -ResetLog -Confirm:$false -ErrorAction Stop } |
                Should -Throw -ErrorId 'LegIdentityMismatch*' -ExpectedMessage "*default leg*give '$good' first*"
            Get-TestSha256 $good 0 16MB | Should -Be $acknowledged

            New-MirrorDevice h1 $good, $stale.Device -LogPath $log -Confirm:$false | Out-Null
            Wait-MirrorDevice h1 -TimeoutSeconds 60 | Out-Null
            Get-TestSha256 $good 0 16MB | Should -Be $acknowledged
            Get-TestSha256 $stale.Device 0 16MB | Should -Be $acknowledged
        } finally {
            Remove-MirrorDevice h1 -Confirm:$false -ErrorAction Ignore
            Remove-Item $stale.FailWrites -ErrorAction Ignore
        }
    }

    It 'still resets a log whose legs were all in sync, whatever leg goes first' {
        $a = New-TestLoopDevice -Name 'h1b-a.img' -Size 16MB
        $b = New-TestLoopDevice -Name 'h1b-b.img' -Size 16MB
        $log = Join-Path (Split-Path (New-TestImage -Name 'h1b.marker' -Size 0)) 'h1b.log'
        try {
            New-MirrorDevice h1b $a, $b -LogPath $log -NoSync -Confirm:$false | Out-Null
            Remove-MirrorDevice h1b -Confirm:$false
            $m = New-MirrorDevice h1b $b, $a -LogPath $log -ResetLog -RecoveryBytesPerSecond 1MB -Confirm:$false
            $m.DefaultLeg | Should -Be $b
        } finally { Remove-MirrorDevice h1b -Confirm:$false -ErrorAction Ignore }
    }
}

Describe 'Ctrl+C on a copy into a mirror whose leg hangs' {
    It 'gives the shell back within seconds; the job goes on in the host and completes once the leg answers again' {
        $fast = New-TestLoopDevice -Name 'h2-fast.img' -Size 16MB
        $hung = New-PausableDisk 'h2-hung'
        $paused = $false
        $shell = $null
        try {
            New-MirrorDevice h2 $fast, $hung.Device -NoSync -Confirm:$false | Out-Null
            Send-PauseControl $hung.Socket 'p' | Should -Be 'P'
            $paused = $true
            $state = [Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
            $state.ImportPSModule("$PSScriptRoot/../../Kcopyd.psd1")
            $shell = [powershell]::Create($state)
            $null = $shell.AddScript('Clear-Region -Path (Get-MirrorDevice h2) -Offset 0 -Length 16MB -Wait -Confirm:$false')
            $async = $shell.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(10)
            while (-not (Get-CopyJob | Where-Object State -EQ 'Running') -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
            Start-Sleep -Milliseconds 500
            $job = Get-CopyJob | Where-Object State -EQ 'Running' | Select-Object -Last 1
            $job | Should -Not -BeNullOrEmpty

            $stop = $shell.BeginStop($null, $null)   # what Ctrl+C does
            $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(10)) | Should -BeTrue -Because 'Ctrl+C must not wait forever on a hung leg'
            $async.IsCompleted | Should -BeTrue

            # Ctrl+C stopped the waiting, not the job (as with any daemon's job): it waits on the leg still.
            (Get-CopyJob -Id $job.Id).State | Should -Be 'Running'
            Send-PauseControl $hung.Socket 'r' | Should -Be 'R'
            $paused = $false
            (Wait-CopyJob -Id $job.Id -TimeoutSeconds 30).State | Should -Be 'Completed'
        } finally {
            if ($paused) { Send-PauseControl $hung.Socket 'r' | Out-Null }
            if ($shell) { $shell.Dispose() }
            Remove-MirrorDevice h2 -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'Ctrl+C on Test-MirrorDevice while a leg hangs' {
    It 'gives the shell back within seconds, and the mirror can be scrubbed again once the leg answers' {
        $fast = New-TestLoopDevice -Name 'h3-fast.img' -Size 8MB
        $hung = New-PausableDisk 'h3-hung' -Size '8M'
        $paused = $false
        $shell = $null
        try {
            New-MirrorDevice h3 $fast, $hung.Device -NoSync -Confirm:$false | Out-Null
            Send-PauseControl $hung.Socket 'p' | Should -Be 'P'
            $paused = $true
            $state = [Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
            $state.ImportPSModule("$PSScriptRoot/../../Kcopyd.psd1")
            $shell = [powershell]::Create($state)
            $null = $shell.AddScript('Test-MirrorDevice h3')
            $async = $shell.BeginInvoke()
            Start-Sleep -Seconds 2   # the scrub is waiting on its first read of the paused leg

            $clock = [Diagnostics.Stopwatch]::StartNew()
            $stop = $shell.BeginStop($null, $null)   # what Ctrl+C does
            $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(15)) | Should -BeTrue -Because 'Ctrl+C must not wait for a hung leg'
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 15
            $async.IsCompleted | Should -BeTrue

            Send-PauseControl $hung.Socket 'r' | Should -Be 'R'
            $paused = $false
            @(Test-MirrorDevice h3) | Should -BeNullOrEmpty
        } finally {
            if ($paused) { Send-PauseControl $hung.Socket 'r' | Out-Null }
            if ($shell) { $shell.Dispose() }
            Remove-MirrorDevice h3 -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'A mirror re-created from its log over a leg that is not the one the log knew' {
    It 'is refused as LegIdentityMismatch when an image file leg was deleted and re-created under the same inode' {
        $fs = New-TestLoopDevice -Name 'h3-fs.img' -Size 96MB
        mkfs.ext4 -q -F $fs
        $mountPoint = Join-Path (Split-Path (New-TestImage -Name 'h3.marker' -Size 0)) 'h3-mnt'
        New-Item -ItemType Directory $mountPoint | Out-Null
        mount $fs $mountPoint
        try {
            $a = Join-Path $mountPoint 'a.img'; $b = Join-Path $mountPoint 'b.img'; $log = Join-Path $mountPoint 'h3.log'
            foreach ($image in $a, $b) { $file = [IO.File]::Create($image); $file.SetLength(16MB); $file.Dispose() }
            Write-RandomRegion -Path $a -Offset 0 -Length 16MB -Seed 903
            $data = Get-TestSha256 $a 0 16MB
            New-MirrorDevice h3 $a, $b -LogPath $log -Confirm:$false | Out-Null
            Wait-MirrorDevice h3 -TimeoutSeconds 60 | Out-Null
            Remove-MirrorDevice h3 -Confirm:$false
            $inode = (stat -c %i $b)
            Remove-Item $b
            $file = [IO.File]::Create($b); $file.SetLength(16MB); $file.Dispose()
            if ((stat -c %i $b) -ne $inode) { Set-ItResult -Skipped -Because 'ext4 did not reuse the inode'; return }

            { New-MirrorDevice h3 $a, $b -LogPath $log -Confirm:$false -ErrorAction Stop } |
                Should -Throw -ErrorId 'LegIdentityMismatch*' -ExpectedMessage "*'$b' differs from the default leg*"
            Get-MirrorDevice h3 -ErrorAction Ignore | Should -BeNullOrEmpty

            New-MirrorDevice h3 $a, $b -LogPath $log -ResetLog -Confirm:$false | Out-Null
            Wait-MirrorDevice h3 -TimeoutSeconds 60 | Out-Null
            Get-TestSha256 $b 0 16MB | Should -Be $data
        } finally {
            Remove-MirrorDevice h3 -Confirm:$false -ErrorAction Ignore
            umount $mountPoint
        }
    }

    It 'is refused when a leg was written outside the mirror, and a log whose legs are out of sync is still taken' {
        $a = New-TestLoopDevice -Name 'h4-a.img' -Size 16MB
        $b = New-TestLoopDevice -Name 'h4-b.img' -Size 16MB
        $log = Join-Path (Split-Path (New-TestImage -Name 'h4.marker' -Size 0)) 'h4.log'
        try {
            Write-RandomRegion -Path $a -Offset 0 -Length 16MB -Seed 904
            New-MirrorDevice h4 $a, $b -LogPath $log -Confirm:$false | Out-Null
            Wait-MirrorDevice h4 -TimeoutSeconds 60 | Out-Null
            Remove-MirrorDevice h4 -Confirm:$false
            New-MirrorDevice h4 $a, $b -LogPath $log -Confirm:$false | Out-Null   # the same legs: taken
            Remove-MirrorDevice h4 -Confirm:$false
            Write-RandomRegion -Path $b -Offset 0 -Length 16MB -Seed 905
            { New-MirrorDevice h4 $a, $b -LogPath $log -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'LegIdentityMismatch*'
        } finally { Remove-MirrorDevice h4 -Confirm:$false -ErrorAction Ignore }
    }
}
