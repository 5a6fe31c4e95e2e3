BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
}

AfterAll {
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'New-, Get-, Set-, Remove-CopyClient' {
    AfterEach { Get-CopyClient | Where-Object Name -ne 'default' | Remove-CopyClient -Force -Confirm:$false }

    It 'makes a client with its own pool and throttle, lists it after the default one, and formats within 80 columns' {
        $client = New-CopyClient backup -PageCount 64 -SubJobSize 1MB -BytesPerSecond 50MB -DutyCyclePercent 50
        $client.Name | Should -Be 'backup'
        $client.PageCount | Should -Be 64
        $client.FreePages | Should -Be 64
        $client.SubJobSize | Should -Be 1MB
        $client.BytesPerSecond | Should -Be 50MB
        $client.DutyCyclePercent | Should -Be 50
        (Get-CopyClient).Name | Should -Be @('default', 'backup')
        (Get-CopyClient back*).Name | Should -Be 'backup'
        $table = Get-CopyClient | Format-Table | Out-String -Width 80
        $table | Should -Match 'backup\s+64/64\s+4 MiB\s+1 MiB\s+0\s+50 MiB/s\s+50'
        ($table -split "`n" | Measure-Object Length -Maximum).Maximum | Should -BeLessOrEqual 80
    }

    It 'changes the throttle with Set-CopyClient, also from the pipeline' {
        New-CopyClient slow -Confirm:$false | Out-Null
        $changed = Get-CopyClient slow | Set-CopyClient -BytesPerSecond 1MB -PassThru
        $changed.BytesPerSecond | Should -Be 1MB
        $changed.DutyCyclePercent | Should -Be 100
        Set-CopyClient slow -DutyCyclePercent 25
        (Get-CopyClient slow).DutyCyclePercent | Should -Be 25
        (Get-CopyClient slow).BytesPerSecond | Should -Be 1MB -Because 'only what is given changes'
        Set-CopyClient slow -BytesPerSecond 0 -WhatIf
        (Get-CopyClient slow).BytesPerSecond | Should -Be 1MB -Because '-WhatIf changes nothing'
    }

    It 'refuses bad input with specific errors, non-terminating where the pipeline can go on' {
        New-CopyClient dup | Out-Null
        New-CopyClient dup -ErrorVariable e -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $e[0].FullyQualifiedErrorId | Should -BeLike 'ClientExists*'
        { New-CopyClient default -ErrorAction Stop } | Should -Throw -ErrorId 'ClientExists*'
        { New-CopyClient 'bad/name' -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidClientName*'
        { New-CopyClient odd -SubJobSize 100000 -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidClientOptions*'
        { New-CopyClient small -PageCount 8 -SubJobSize 1MB -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidClientOptions*'
        { New-CopyClient huge -PageCount 70000 -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentValidationError*'
        Get-CopyClient nosuch -ErrorVariable e -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $e[0].FullyQualifiedErrorId | Should -BeLike 'ClientNotFound*'
        { Remove-CopyClient default -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'ClientIsDefault*'
        { Start-RegionCopy -Source /dev/null -Destination /dev/null -Client nosuch -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'ClientNotFound*'
        (Get-CopyClient).Name | Should -Be @('default', 'dup')
    }

    It 'makes nothing under -WhatIf' {
        New-CopyClient ghost -WhatIf | Should -BeNullOrEmpty
        (Get-CopyClient).Name | Should -Not -Contain 'ghost'
    }
}

Describe 'Isolation between clients, as an admin sees it' {
    It 'leaves another client''s jobs at full speed while two jobs hang on a paused disk and hold every page of theirs' {
        # Slow writes, so the jobs below are still in the middle of their chunks when the disk is paused.
        $socket = Join-Path (Split-Path (New-TestImage -Name 'iso-hung.marker' -Size 0)) 'iso-hung.sock'
        $paused = [pscustomobject]@{
            Device = New-TestNbdLoopDevice -Name 'iso-hung' -Nbdkit '--filter=pause', '--filter=delay', 'memory', '32M', 'wdelay=200ms', "pause-control=$socket"
            Socket = $socket
        }
        $source = New-TestLoopDevice -Name 'iso-src.img' -Size 32MB
        Write-RandomRegion -Path $source -Offset 0 -Length 32MB -Seed 1401
        $fast = New-TestLoopDevice -Name 'iso-fast.img' -Size 16MB
        $alsoDefault = New-TestLoopDevice -Name 'iso-default.img' -Size 16MB
        New-CopyClient other -Confirm:$false | Out-Null
        $hung = @()
        try {
            # Two 16 MiB copies on the default client into the slow disk: 4 sub-jobs of 2 MiB each in flight,
            # 8 MiB apiece, so the default client's 256 pages (16 MiB) are all held; then the disk stops answering.
            $hung = @(
                Start-RegionCopy -Source $source -Destination $paused.Device -Length 16MB -Force -Confirm:$false
                Start-RegionCopy -Source $source -SourceOffset 16MB -Destination $paused.Device -DestinationOffset 16MB -Length 16MB -Force -Confirm:$false
            )
            $deadline = [DateTime]::UtcNow.AddSeconds(20)
            while ((Get-CopyClient default).FreePages -gt 0 -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
            Send-PauseControl $paused.Socket 'p' | Should -Be 'P'
            (Get-CopyClient default).FreePages | Should -Be 0 -Because 'the hung jobs hold every page of the default client'
            $held = (Get-CopyJob -Id $hung.Id | Measure-Object BytesCopied -Sum).Sum
            $held | Should -BeLessThan 32MB -Because 'the jobs are stopped in the middle'

            # Another job on the default client waits behind them: no page is free.
            $waiting = Start-RegionCopy -Source $source -Destination $alsoDefault -Length 16MB -Confirm:$false
            Start-Sleep -Seconds 2
            (Get-CopyJob -Id $waiting.Id).BytesCopied | Should -Be 0

            # The same copy on its own client runs at once, at full speed.
            $clock = [Diagnostics.Stopwatch]::StartNew()
            $done = Start-RegionCopy -Source $source -Destination $fast -Length 16MB -Client other -Wait -Confirm:$false
            $clock.Stop()
            $done.State | Should -Be 'Completed'
            $done.Client | Should -Be 'other'
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
            Get-TestSha256 $fast 0 16MB | Should -Be (Get-TestSha256 $source 0 16MB)
            (Get-CopyClient other).FreePages | Should -Be (Get-CopyClient other).PageCount

            (Get-CopyJob -Id $hung.Id).BytesCopied | Measure-Object -Sum | ForEach-Object Sum | Should -Be $held -Because 'the paused disk still holds them'

            # A copy that must open the hung disk now is refused within the open's bound, not left hanging.
            $clock.Restart()
            { Start-RegionCopy -Source $source -Destination $paused.Device -Length 2MB -Client other -Force -Confirm:$false -ErrorAction Stop } |
                Should -Throw -ErrorId 'DeviceNotResponding*'
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 20
        } finally {
            Send-PauseControl $paused.Socket 'r' | Out-Null
        }
        # Once the disk answers, everything finishes and every byte is where it belongs.
        $ended = Wait-CopyJob -Id (@($hung.Id) + $waiting.Id) -Timeout 120
        $ended.State | Should -Be @('Completed', 'Completed', 'Completed')
        Get-TestSha256 $paused.Device 0 32MB | Should -Be (Get-TestSha256 $source 0 32MB)
        Get-TestSha256 $alsoDefault 0 16MB | Should -Be (Get-TestSha256 $source 0 16MB)
        Remove-CopyClient other -Confirm:$false
        (Get-CopyClient).Name | Should -Be @('default')
    }

    It 'Remove-CopyClient refuses a client with jobs running; -Force stops them and frees it' {
        # 4 sub-jobs of 2 MiB in flight and a second per write: 32 MiB take several seconds.
        $slow = New-TestNbdLoopDevice -Name 'iso-force' -Nbdkit '--filter=delay', 'memory', '32M', 'wdelay=1000ms'
        $source = New-TestLoopDevice -Name 'iso-force-src.img' -Size 32MB
        New-CopyClient doomed -Confirm:$false | Out-Null
        $job = Start-RegionCopy -Source $source -Destination $slow -Client doomed -Force -Confirm:$false
        { Remove-CopyClient doomed -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'ClientInUse*'
        (Get-CopyJob -Id $job.Id).State | Should -BeIn 'Queued', 'Running'
        Remove-CopyClient doomed -Force -Confirm:$false -WarningAction SilentlyContinue
        (Get-CopyClient).Name | Should -Not -Contain 'doomed'
        # Its writes of a second each may outlast the 5 s Remove-CopyClient waits: then it is Stopping until they return.
        (Get-CopyJob -Id $job.Id).State | Should -BeIn 'Stopping', 'Stopped'
        (Wait-CopyJob -Id $job.Id -TimeoutSeconds 60).State | Should -Be 'Stopped'
    }
}

Describe 'A copy''s own -BytesPerSecond' {
    It 'holds one job to its rate while the next job on the same client runs at full speed' {
        $source = New-TestLoopDevice -Name 'rate-src.img' -Size 16MB
        Write-RandomRegion -Path $source -Offset 0 -Length 16MB -Seed 1402
        $slowTarget = New-TestLoopDevice -Name 'rate-slow.img' -Size 8MB
        $fastTarget = New-TestLoopDevice -Name 'rate-fast.img' -Size 8MB
        $slow = Start-RegionCopy -Source $source -Destination $slowTarget -Length 8MB -BytesPerSecond 2MB -Confirm:$false
        $slow.MaxBytesPerSecond | Should -Be 2MB
        $fast = Start-RegionCopy -Source $source -SourceOffset 8MB -Destination $fastTarget -Length 8MB -Wait -Confirm:$false
        $fast.State | Should -Be 'Completed'
        (Get-CopyJob -Id $slow.Id).State | Should -Be 'Running' -Because '8 MiB at 2 MiB/s takes about 3 s'
        $slowDone = Wait-CopyJob -Id $slow.Id -Timeout 30
        $slowDone.State | Should -Be 'Completed'
        ($slowDone.EndTime - $slowDone.StartTime).TotalSeconds | Should -BeGreaterThan 2.5
        Get-TestSha256 $slowTarget 0 8MB | Should -Be (Get-TestSha256 $source 0 8MB)
        Get-TestSha256 $fastTarget 0 8MB | Should -Be (Get-TestSha256 $source 8MB 8MB)
    }

    It 'is taken by Clear-Region too, which keeps it on the job' {
        $target = New-TestLoopDevice -Name 'rate-zero.img' -Size 8MB
        Write-RandomRegion -Path $target -Offset 0 -Length 8MB -Seed 1403
        # Zeroing goes in 64 MiB chunks and the first starts at once, so an 8 MiB region is not slowed: the pacing
        # itself is the engine's (ThrottleTests).
        $job = Clear-Region -Path $target -Offset 0 -Length 8MB -BytesPerSecond 1MB -Wait -Confirm:$false
        $job.State | Should -Be 'Completed'
        $job.MaxBytesPerSecond | Should -Be 1MB
        cmp -n 8388608 $target /dev/zero
        $LASTEXITCODE | Should -Be 0
    }
}
