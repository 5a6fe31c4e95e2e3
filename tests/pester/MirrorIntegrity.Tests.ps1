BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
}

AfterAll {
    Remove-TestLoopDevices   # stops the file's host first: its mirrors close, stacked ones first
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'A read error on the default leg during the first recovery' {
    It 'never serves the second leg''s old bytes, and the mirror ends in sync with the first leg''s data' {
        $first = New-FailingDisk 'i1-first'
        $second = New-TestLoopDevice -Name 'i1-second.img' -Size 16MB
        $out = New-TestLoopDevice -Name 'i1-out.img' -Size 16MB
        Write-RandomRegion -Path $first.Device -Offset 0 -Length 16MB -Seed 401
        Write-RandomRegion -Path $second -Offset 0 -Length 16MB -Seed 402
        $truth = 0..31 | ForEach-Object { Get-TestSha256 $first.Device ($_ * 512KB) 512KB }
        $old = 0..31 | ForEach-Object { Get-TestSha256 $second ($_ * 512KB) 512KB }
        try {
            New-MirrorDevice i1 $first.Device, $second -RecoveryBytesPerSecond 4MB -Confirm:$false | Out-Null
            New-Item -ItemType File $first.FailReads | Out-Null
            $read = Start-RegionCopy (Get-MirrorDevice i1) $out -IgnoreErrors -Wait -Confirm:$false -ErrorAction SilentlyContinue
            Start-Sleep -Seconds 1
            Remove-Item $first.FailReads
            $read.State | Should -Be 'Failed' -Because 'the out-of-sync regions could be read only from the failing default leg'
            $unread = [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData([byte[]]::new(512KB)))
            foreach ($region in 0..31) {
                $got = Get-TestSha256 $out ($region * 512KB) 512KB
                $got | Should -Not -Be $old[$region] -Because "region $region must never come from the never-synced second leg"
                $got | Should -BeIn @($truth[$region], $unread) -Because "region $region is the first leg's data, or failed and was not written"
            }

            $status = Wait-MirrorDevice i1 -TimeoutSeconds 120
            $status.State | Should -Be 'InSync'
            $status.DefaultLeg | Should -Be $first.Device
            @($status.Legs.Health) | Should -Be @('Alive', 'Alive')
            foreach ($region in 0..31) { Get-TestSha256 $second ($region * 512KB) 512KB | Should -Be $truth[$region] }
        } finally {
            Remove-Item $first.FailReads -ErrorAction Ignore
            Remove-MirrorDevice i1 -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'A leg that fails writes, then the mirror re-created from its log' {
    It 'keeps every write acknowledged after the failure and resyncs the dead leg from the current one' {
        $first = New-FailingDisk 'i2-first'
        $second = New-TestLoopDevice -Name 'i2-second.img' -Size 16MB
        $data = New-TestLoopDevice -Name 'i2-data.img' -Size 16MB
        Write-RandomRegion -Path $data -Offset 0 -Length 16MB -Seed 411
        $log = Join-Path (Split-Path (New-TestImage -Name 'i2.marker' -Size 0)) 'i2.log'
        try {
            New-MirrorDevice i2 $first.Device, $second -NoSync -LogPath $log -Confirm:$false | Out-Null
            New-Item -ItemType File $first.FailWrites | Out-Null
            $job = Start-RegionCopy $data (Get-MirrorDevice i2) -Length 8MB -Wait -Confirm:$false -WarningVariable warned -WarningAction SilentlyContinue
            $job.State | Should -Be 'Completed'
            ($warned -join "`n") | Should -Match 'degraded'
            $status = Get-MirrorDevice i2
            $status.State | Should -Be 'Degraded'
            $status.DefaultLeg | Should -Be $second
            $status.Warnings[-1] | Should -Match 'is dead'
            Remove-MirrorDevice i2 -Confirm:$false
            Remove-Item $first.FailWrites

            # Throttled, so the resync (8 MiB) cannot end before the new mirror's status is read.
            $again = New-MirrorDevice i2 $first.Device, $second -LogPath $log -RecoveryBytesPerSecond 4MB -Confirm:$false
            $again.DefaultLeg | Should -Be $second
            @($again.Legs.Health) | Should -Be @('Stale', 'Alive')
            (Wait-MirrorDevice i2 -TimeoutSeconds 120).State | Should -Be 'InSync'
            @((Get-MirrorDevice i2).Legs.Health) | Should -Be @('Alive', 'Alive')
        } finally {
            Remove-Item $first.FailWrites -ErrorAction Ignore
            Remove-MirrorDevice i2 -Confirm:$false -ErrorAction Ignore
        }
        $expected = Get-TestSha256 $data 0 8MB
        Get-TestSha256 $second 0 8MB | Should -Be $expected
        Get-TestSha256 $first.Device 0 8MB | Should -Be $expected
    }
}

Describe 'Legs whose names were swapped' {
    It 'are refused as LegIdentityMismatch, naming the order the log knows, and nothing is written' {
        $a = New-TestImage -Name 'i3-a.img' -Size 8MB
        $b = New-TestImage -Name 'i3-b.img' -Size 8MB
        Write-RandomRegion -Path $a -Offset 0 -Length 8MB -Seed 421
        $log = Join-Path (Split-Path $a) 'i3.log'
        New-MirrorDevice i3 $a, $b -LogPath $log -Confirm:$false | Out-Null
        (Wait-MirrorDevice i3 -TimeoutSeconds 60).State | Should -Be 'InSync'
        Remove-MirrorDevice i3 -Confirm:$false
        Write-RandomRegion -Path $a -Offset 0 -Length 1MB -Seed 422
        Rename-Item $a 'i3-tmp.img'; Rename-Item $b (Split-Path $a -Leaf); Rename-Item (Join-Path (Split-Path $a) 'i3-tmp.img') (Split-Path $b -Leaf)
        $before = $a, $b, $log | ForEach-Object { Get-TestSha256 $_ 0 (Get-Item $_).Length }

        $err = { New-MirrorDevice i3 $a, $b -LogPath $log -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike 'LegIdentityMismatch,*'
        $err.Exception.Message | Should -Match ([regex]::Escape("give them as $b, $a"))
        $a, $b, $log | ForEach-Object { Get-TestSha256 $_ 0 (Get-Item $_).Length } | Should -Be $before
        # In the order the log knows them, the mirror sees that the legs differ in a region the log calls in sync
        # (the first megabyte was written outside it) and refuses that too; -ResetLog resyncs from the first leg.
        { New-MirrorDevice i3 $b, $a -LogPath $log -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'LegIdentityMismatch*' -ExpectedMessage "*'$a' differs from the default leg '$b'*"
        $a, $b, $log | ForEach-Object { Get-TestSha256 $_ 0 (Get-Item $_).Length } | Select-Object -First 2 | Should -Be ($before | Select-Object -First 2)
        $back = New-MirrorDevice i3 $b, $a -LogPath $log -ResetLog -Confirm:$false
        try { (Wait-MirrorDevice i3 -TimeoutSeconds 60).State | Should -Be 'InSync' } finally { Remove-MirrorDevice i3 -Confirm:$false }
        Get-TestSha256 $a 0 8MB | Should -Be (Get-TestSha256 $b 0 8MB)
    }
}

Describe 'A log whose bits were flipped' {
    It 'is refused as LogCorrupt when both copies are spoilt, and -ResetLog starts it afresh with every region out of sync' {
        $legs = 1..2 | ForEach-Object { New-TestLoopDevice -Name "i4-$_.img" -Size 8MB }
        $log = Join-Path (Split-Path (New-TestImage -Name 'i4.marker' -Size 0)) 'i4.log'
        New-MirrorDevice i4 $legs -NoSync -LogPath $log -Confirm:$false | Out-Null
        Remove-MirrorDevice i4 -Confirm:$false
        $bytes = [IO.File]::ReadAllBytes($log)
        $slot = $bytes.Length / 2
        $bytes[4096] = $bytes[4096] -bxor 4                 # slot A's bitmap
        $bytes[$slot + 4096] = $bytes[$slot + 4096] -bxor 1 # slot B's bitmap
        [IO.File]::WriteAllBytes($log, $bytes)

        $err = { New-MirrorDevice i4 $legs -LogPath $log -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike 'LogCorrupt,*'
        $err.Exception.Message | Should -Match 'ResetLog'
        [IO.File]::ReadAllBytes($log) | Should -Be $bytes
        $reset = New-MirrorDevice i4 $legs -LogPath $log -ResetLog -RecoveryBytesPerSecond 1MB -Confirm:$false
        try {
            $reset.InSyncRegions | Should -BeLessThan $reset.RegionCount
            (Wait-MirrorDevice i4 -TimeoutSeconds 60).State | Should -Be 'InSync'
        } finally { Remove-MirrorDevice i4 -Confirm:$false }
    }
}

Describe 'Repair-MirrorDevice, Add-MirrorLeg, Remove-MirrorLeg and Test-MirrorDevice' {
    It 're-adds a dead leg that works again, copying only the regions written while it was out' {
        $good = New-TestLoopDevice -Name 'r1-good.img' -Size 16MB
        $bad = New-FailingDisk 'r1-bad'
        $data = New-TestLoopDevice -Name 'r1-data.img' -Size 16MB
        Write-RandomRegion -Path $data -Offset 0 -Length 16MB -Seed 431
        try {
            New-MirrorDevice r1 $good, $bad.Device -NoSync -Confirm:$false | Out-Null
            New-Item -ItemType File $bad.FailWrites | Out-Null
            (Start-RegionCopy $data (Get-MirrorDevice r1) -SourceOffset 1MB -DestinationOffset 1MB -Length 1MB -Wait -Confirm:$false -WarningAction SilentlyContinue).State | Should -Be 'Completed'
            (Get-MirrorDevice r1).State | Should -Be 'Degraded'
            Remove-Item $bad.FailWrites
            $before = (Get-MirrorDevice r1).RecoveredRegions

            Repair-MirrorDevice r1 -WhatIf
            @((Get-MirrorDevice r1).Legs.Health) | Should -Be @('Alive', 'Dead')
            $repaired = Repair-MirrorDevice r1 -Confirm:$false
            @($repaired.Legs.Health)[1] | Should -BeIn @('Stale', 'Alive')
            $status = Wait-MirrorDevice r1 -TimeoutSeconds 60
            $status.State | Should -Be 'InSync'
            $status.RecoveredRegions - $before | Should -Be 2   # 1 MiB at 1 MiB: regions 2 and 3
            Get-TestSha256 $bad.Device 0 16MB | Should -Be (Get-TestSha256 $good 0 16MB)
        } finally {
            Remove-Item $bad.FailWrites -ErrorAction Ignore
            Remove-MirrorDevice r1 -Confirm:$false -ErrorAction Ignore
        }
    }

    It 'replaces a leg with a new device, adds and splits off legs, and scrubs the legs region by region' {
        $a = New-TestLoopDevice -Name 'r2-a.img' -Size 8MB
        $b = New-TestLoopDevice -Name 'r2-b.img' -Size 8MB
        $c = New-TestLoopDevice -Name 'r2-c.img' -Size 8MB
        $d = New-TestLoopDevice -Name 'r2-d.img' -Size 8MB
        Write-RandomRegion -Path $a -Offset 0 -Length 8MB -Seed 441
        try {
            New-MirrorDevice r2 $a, $b -Confirm:$false | Out-Null
            (Wait-MirrorDevice r2 -TimeoutSeconds 60).State | Should -Be 'InSync'
            $expected = Get-TestSha256 $a 0 8MB

            $replaced = Repair-MirrorDevice r2 -ReplaceLeg $b -NewLeg $c -Confirm:$false
            @($replaced.Legs.Path) | Should -Be @($a, $c)
            (Wait-MirrorDevice r2 -TimeoutSeconds 60).State | Should -Be 'InSync'
            Get-TestSha256 $c 0 8MB | Should -Be $expected
            # The replaced leg is released: it can be written again.
            (Start-RegionCopy $d $b -Length 1MB -Wait -Confirm:$false).State | Should -Be 'Completed'

            @((Add-MirrorLeg r2 $d -Confirm:$false).Legs.Path) | Should -Be @($a, $c, $d)
            (Wait-MirrorDevice r2 -TimeoutSeconds 60).State | Should -Be 'InSync'
            Get-TestSha256 $d 0 8MB | Should -Be $expected
            Remove-MirrorLeg r2 $d -Confirm:$false -WarningVariable splitWarning -WarningAction SilentlyContinue | Out-Null
            $splitWarning | Should -BeNullOrEmpty -Because 'an in-sync leg leaves as a consistent copy'
            @((Get-MirrorDevice r2).Legs.Path) | Should -Be @($a, $c)

            @(Test-MirrorDevice r2) | Should -BeNullOrEmpty
            Write-RandomRegion -Path $c -Offset (5 * 512KB) -Length 4KB -Seed 442   # behind the mirror's back
            $found = @(Test-MirrorDevice r2 -WarningAction SilentlyContinue)
            $found.Count | Should -Be 1
            $found[0].Region | Should -Be 5
            $found[0].Offset | Should -Be (5 * 512KB)
            $found[0].Legs | Should -Be @($c)
            Test-MirrorDevice r2 -Repair -WhatIf | Should -BeNullOrEmpty
            @(Test-MirrorDevice r2 -WarningAction SilentlyContinue).Count | Should -Be 1
            @(Test-MirrorDevice r2 -Repair -Confirm:$false).Count | Should -Be 1
            @(Test-MirrorDevice r2) | Should -BeNullOrEmpty
            Get-TestSha256 $c 0 8MB | Should -Be $expected
        } finally {
            Remove-MirrorDevice r2 -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'Removing a mirror that a copy is using' {
    It 'is refused as MirrorInUse while a copy into it runs, and -Force stops the copy first' {
        # The second leg takes 200 ms per write, so the copy is still running when the removal comes.
        $legs = @(
            New-TestLoopDevice -Name 'u1-1.img' -Size 16MB
            New-TestNbdLoopDevice -Name 'u1-slow' -Nbdkit '--filter=delay', 'memory', '16M', 'wdelay=200ms'
        )
        $data = New-TestLoopDevice -Name 'u1-data.img' -Size 16MB
        New-MirrorDevice u1 $legs -NoSync -Confirm:$false | Out-Null
        try {
            # A mirror's bare name is a destination too, when no file of that name is here.
            $job = Start-RegionCopy $data u1 -Length 16MB -Confirm:$false
            $job.Destination | Should -Be @('u1')
            $err = { Remove-MirrorDevice u1 -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
            $err.FullyQualifiedErrorId | Should -BeLike 'MirrorInUse,*'
            $err.Exception.Message | Should -Match "job\(s\) $($job.Id)"
            @(Get-MirrorDevice u1).Count | Should -Be 1
            Remove-MirrorDevice u1 -Force -Confirm:$false
            (Get-CopyJob -Id $job.Id).State | Should -Be 'Stopped'
            @(Get-MirrorDevice u1 -ErrorAction SilentlyContinue).Count | Should -Be 0
        } finally {
            Remove-MirrorDevice u1 -Force -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'Removing a mirror whose leg hangs' {
    It 'returns within a bounded time with a warning, and lets go of the legs once the leg answers again' {
        # A real block device that stops answering while paused (nbdkit's pause filter, driven over its socket).
        $paused = New-PausableDisk 'h1-hung'
        $hung = $paused.Device
        $good = New-TestLoopDevice -Name 'h1-good.img' -Size 16MB
        $data = New-TestLoopDevice -Name 'h1-data.img' -Size 16MB
        New-MirrorDevice h1 $good, $hung -NoSync -Confirm:$false | Out-Null
        try {
            Send-PauseControl $paused.Socket 'p' | Should -Be 'P'
            $job = Start-RegionCopy $data h1 -Length 4MB -Confirm:$false
            Start-Sleep -Milliseconds 500
            (Get-CopyJob -Id $job.Id).State | Should -Be 'Running' -Because 'its writes to the paused leg hang'
            $clock = [Diagnostics.Stopwatch]::StartNew()
            Remove-MirrorDevice h1 -Force -Confirm:$false -WarningVariable warned -WarningAction SilentlyContinue
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 30 -Because 'a hung leg must not hang the admin'
            ($warned -join "`n") | Should -Match 'has not returned'
            @(Get-MirrorDevice -ErrorAction SilentlyContinue).Name | Should -Not -Contain 'h1'
            # Until the hung I/O returns, the legs are still held: a new mirror on them is refused, not corrupted.
            $err = { New-MirrorDevice h1b $good, $hung -NoSync -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
            $err.FullyQualifiedErrorId | Should -BeLike 'LegInUse,*'
        } finally {
            Send-PauseControl $paused.Socket 'r' | Should -Be 'R'
        }
        $deadline = [DateTime]::UtcNow.AddSeconds(60)
        while ($true) {
            try { New-MirrorDevice h1c $good, $hung -NoSync -Confirm:$false -ErrorAction Stop | Out-Null; break }
            catch { if ($_.FullyQualifiedErrorId -notlike 'LegInUse,*' -or [DateTime]::UtcNow -gt $deadline) { throw } }
            Start-Sleep -Milliseconds 200
        }
        Remove-MirrorDevice h1c -Confirm:$false
        # Its writes were all in flight when it was stopped: they end as the leg answers, whichever way.
        (Wait-CopyJob -Id $job.Id -TimeoutSeconds 30).IsFinished | Should -BeTrue
    }
}
