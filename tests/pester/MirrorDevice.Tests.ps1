BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null

    function Get-DeviceHash([string] $Path, [long] $Length) { Get-TestSha256 -Path $Path -Offset 0 -Length $Length }
}

AfterAll {
    Remove-TestLoopDevices   # stops the file's host first: its mirrors close, stacked ones first
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'New-MirrorDevice and Wait-MirrorDevice' {
    It 'recovers a new mirror until every leg matches the first, and reports its status' {
        $first = New-TestLoopDevice -Name 'm1-a.img' -Size 16MB
        $second = New-TestLoopDevice -Name 'm1-b.img' -Size 16MB
        Write-RandomRegion -Path $first -Offset 0 -Length 16MB -Seed 101
        Write-RandomRegion -Path $second -Offset 0 -Length 16MB -Seed 102
        try {
            $created = New-MirrorDevice -Name m1 -Leg $first, $second -Confirm:$false
            $created.Name | Should -Be 'm1'
            $created.Size | Should -Be 16MB
            $created.RegionSize | Should -Be 512KB
            $created.RegionCount | Should -Be 32
            $created.LogKind | Should -Be 'core'

            $status = Wait-MirrorDevice -Name m1 -TimeoutSeconds 120
            $status.State | Should -Be 'InSync'
            $status.InSyncRegions | Should -Be 32
            $status.SyncPercent | Should -Be 100
            @($status.Legs.Health) | Should -Be @('Alive', 'Alive')
            @($status.Legs.Path) | Should -Be @($first, $second)
            Get-DeviceHash $second 16MB | Should -Be (Get-DeviceHash $first 16MB)
        } finally {
            Remove-MirrorDevice -Name m1 -Confirm:$false
        }
        Get-MirrorDevice -Name m1 -ErrorVariable missing -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $missing[0].FullyQualifiedErrorId | Should -BeLike 'MirrorNotFound,*'
        # The legs are released: they can be opened exclusively again.
        (Start-RegionCopy $first $second -Length 1MB -Wait -Confirm:$false).State | Should -Be 'Completed'
    }

    It 'takes writes and serves reads as a copy source and destination, on every leg' {
        $legs = 1..2 | ForEach-Object { New-TestLoopDevice -Name "m2-$_.img" -Size 16MB }
        $data = New-TestLoopDevice -Name 'm2-data.img' -Size 16MB
        $out = New-TestLoopDevice -Name 'm2-out.img' -Size 16MB
        Write-RandomRegion -Path $data -Offset 0 -Length 16MB -Seed 103
        try {
            $mirror = New-MirrorDevice m2 $legs -NoSync -Confirm:$false
            $mirror.State | Should -Be 'InSync'

            $write = Start-RegionCopy -Source $data -Destination $mirror -SourceOffset 2MB -DestinationOffset 1MB -Length 8MB -Wait -Confirm:$false
            $write.State | Should -Be 'Completed'
            $write.Destination | Should -Be @('m2')
            $expected = Get-TestSha256 $data 2MB 8MB
            foreach ($leg in $legs) { Get-TestSha256 $leg 1MB 8MB | Should -Be $expected }

            $read = Start-RegionCopy -Source (Get-MirrorDevice m2) -Destination $out -SourceOffset 1MB -Length 8MB -Wait -Confirm:$false
            $read.State | Should -Be 'Completed'
            Get-TestSha256 $out 0 8MB | Should -Be $expected
        } finally {
            Remove-MirrorDevice m2 -Confirm:$false
        }
    }

    It 'reports a mirror that is not in sync in time as MirrorSyncTimeout' {
        $legs = 1..2 | ForEach-Object { New-TestLoopDevice -Name "m3-$_.img" -Size 8MB }
        Write-RandomRegion -Path $legs[0] -Offset 0 -Length 8MB -Seed 104
        try {
            New-MirrorDevice m3 $legs -RecoveryBytesPerSecond 64KB -Confirm:$false | Out-Null
            $status = Wait-MirrorDevice m3 -TimeoutSeconds 1 -ErrorVariable late -ErrorAction SilentlyContinue
            $late[0].FullyQualifiedErrorId | Should -BeLike 'MirrorSyncTimeout,*'
            $late[0].CategoryInfo.Category | Should -Be 'OperationTimeout'
            $status.State | Should -Be 'Recovering'
        } finally {
            Remove-MirrorDevice m3 -Confirm:$false
        }
    }

    It 'shows mirrors as a table, also after serialization' {
        $legs = 1..2 | ForEach-Object { New-TestLoopDevice -Name "m4-$_.img" -Size 8MB }
        $out = New-TestLoopDevice -Name 'm4-out.img' -Size 8MB
        $file = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-mirrors-$PID.xml"
        try {
            New-MirrorDevice m4 $legs -NoSync -Confirm:$false | Out-Null
            Get-MirrorDevice m4 | Export-Clixml $file
            $back = Import-Clixml $file
            $back.PSObject.TypeNames[0] | Should -Be 'Deserialized.Kcopyd.Protocol.MirrorInfo'
            $back.InSyncRegions | Should -Be 16
            $back.Size | Should -Be 8MB
            ($back | Format-Table | Out-String) | Should -Match 'm4\s+InSync'
            # A deserialized mirror still names the live one as a copy endpoint.
            (Start-RegionCopy -Source $back -Destination $out -Length 1MB -Wait -Confirm:$false).Source | Should -Be 'm4'
        } finally {
            Remove-MirrorDevice m4 -Confirm:$false
            Remove-Item $file -ErrorAction Ignore
        }
    }
}

Describe 'Stacked mirrors (the seed scenario)' {
    It 'completes mirror A on mirror B on device C with both recovering and every leg identical' {
        # B = C + Y, recovering slowly, with a request pool of 4; A = X + B, recovering into B.
        $c = New-TestLoopDevice -Name 'seed-c.img' -Size 8MB
        $y = New-TestLoopDevice -Name 'seed-y.img' -Size 8MB
        $x = New-TestLoopDevice -Name 'seed-x.img' -Size 8MB
        Write-RandomRegion -Path $c -Offset 0 -Length 8MB -Seed 105
        Write-RandomRegion -Path $x -Offset 0 -Length 8MB -Seed 106
        try {
            $b = New-MirrorDevice seed-b $c, $y -RequestPoolSize 4 -RecoveryBytesPerSecond 256KB -Confirm:$false
            # Writes into every region of B while it recovers, of the bytes A will hold there (X's), so they agree
            # with A's own recovery whatever the order. Those that hit B's recovering regions are held, holding slots.
            $writes = foreach ($region in 0..15) {
                foreach ($piece in 0..3) {
                    $offset = $region * 512KB + $piece * 64KB
                    Start-RegionCopy -Source $x -Destination $b -SourceOffset $offset -DestinationOffset $offset -Length 64KB -Confirm:$false
                }
            }
            # B holds data, so stacking A on it as a leg to overwrite takes -Force, as the seed's admin meant it.
            $a = New-MirrorDevice seed-a $x, $b -Force -Confirm:$false

            # The seed's state: B's pool all taken, writes held on its recovering region, and callers (A's
            # recovery among them) waiting for a slot.
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            do {
                $seen = Get-MirrorDevice seed-b
                if ($seen.RequestPoolInUse -eq 4 -and $seen.HeldWrites -ge 1 -and $seen.RequestPoolWaiters -ge 1) { break }
                Start-Sleep -Milliseconds 20
            } while ([DateTime]::UtcNow -lt $deadline)
            $seen.RequestPoolInUse | Should -Be 4
            $seen.HeldWrites | Should -BeGreaterOrEqual 1
            $seen.RequestPoolWaiters | Should -BeGreaterOrEqual 1
            (Get-MirrorDevice seed-a).State | Should -Be 'Recovering'

            (Get-MirrorDevice seed-b).RecoveryLimitBytesPerSecond | Should -Be 256KB
            (Set-MirrorDevice seed-b -RecoveryBytesPerSecond 0 -PassThru).RecoveryLimitBytesPerSecond | Should -Be 0
            (Wait-MirrorDevice seed-b, seed-a -TimeoutSeconds 120).State | Should -Be @('InSync', 'InSync')
            foreach ($job in $writes) { (Wait-CopyJob -Id $job.Id -TimeoutSeconds 60).State | Should -Be 'Completed' }
            $expected = Get-DeviceHash $x 8MB
            Get-DeviceHash $c 8MB | Should -Be $expected
            Get-DeviceHash $y 8MB | Should -Be $expected
        } finally {
            Remove-MirrorDevice seed-a -Confirm:$false -ErrorAction Continue
            Remove-MirrorDevice seed-b -Confirm:$false -ErrorAction Continue
        }
    }
}

Describe 'New-MirrorDevice with bad input' {
    BeforeAll {
        $script:Legs = 1..3 | ForEach-Object { New-TestLoopDevice -Name "bad-$_.img" -Size 8MB }
        $script:Spare = New-TestLoopDevice -Name 'bad-spare.img' -Size 8MB
        $script:Wide = New-TestLoopDevice -Name 'bad-4k.img' -Size 8MB -SectorSize 4096
        foreach ($i in 0..2) { Write-RandomRegion -Path $Legs[$i] -Offset 0 -Length 8MB -Seed (110 + $i) }
        $script:Before = $Legs + $Spare | ForEach-Object { Get-DeviceHash $_ 8MB }
        $script:Log = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-badlog-$PID.log"
        New-MirrorDevice holder $Legs[0], $Legs[1] -NoSync -LogPath $Log -Confirm:$false | Out-Null
        Remove-MirrorDevice holder -Confirm:$false
        New-MirrorDevice holder $Legs[0], $Legs[1] -NoSync -Confirm:$false | Out-Null
    }

    AfterAll {
        Remove-MirrorDevice holder -Confirm:$false -ErrorAction Ignore
        Remove-Item $Log -ErrorAction Ignore
    }

    It '<Case> fails with <ErrorId> and writes nothing' -ForEach @(
        @{ Case = 'legs of different block sizes'; ErrorId = 'LegBlockSizeMismatch'; Make = { @{ Name = 'x1'; Leg = $Legs[2], $Wide } } }
        @{ Case = 'a leg of another mirror'; ErrorId = 'LegInUse'; Make = { @{ Name = 'x2'; Leg = $Legs[2], $Legs[0]; Force = $true } } }
        @{ Case = 'a leg of another mirror, not forced'; ErrorId = 'LegInUse'; Make = { @{ Name = 'x2'; Leg = $Legs[2], $Legs[0] } } }
        @{ Case = 'a leg given twice'; ErrorId = 'DuplicateDevice'; Make = { @{ Name = 'x3'; Leg = $Legs[2], $Legs[2]; Force = $true } } }
        @{ Case = 'a leg given twice, not forced'; ErrorId = 'DuplicateDevice'; Make = { @{ Name = 'x3'; Leg = $Legs[2], $Legs[2] } } }
        @{ Case = 'one leg'; ErrorId = 'TooFewLegs'; Make = { @{ Name = 'x6'; Leg = , $Legs[2] } } }
        @{ Case = 'ten legs'; ErrorId = 'TooManyLegs'; Make = { @{ Name = 'x7'; Leg = @($Legs[2], $Spare) * 5 } } }
        @{ Case = 'a region size that is not a power of two'; ErrorId = 'InvalidRegionSize'; Make = { @{ Name = 'x4'; Leg = $Legs[2], $Spare; RegionSize = 3000 } } }
        @{ Case = 'a log written for another mirror'; ErrorId = 'LogMismatch'; Make = { @{ Name = 'x5'; Leg = $Legs[2], $Spare; LogPath = $Log; RegionSize = 1MB } } }
        @{ Case = 'a name in use'; ErrorId = 'MirrorExists'; Make = { @{ Name = 'holder'; Leg = $Legs[2], $Wide } } }
    ) {
        $parameters = & $Make
        $err = { New-MirrorDevice @parameters -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike "$ErrorId,*"
        $now = $Legs + $Spare | ForEach-Object { Get-DeviceHash $_ 8MB }
        $now | Should -Be $Before
        @(Get-MirrorDevice).Name | Should -Be @('holder')
    }
}

Describe 'A mirror with a failing leg' {
    It 'marks the leg Dead, keeps every acknowledged write on the live leg, and reports Degraded' {
        $trigger = Join-Path (Split-Path (New-TestImage -Name 'wfail.marker' -Size 0)) 'wfail'
        # A real block device whose writes fail with EIO while $trigger exists (nbdkit's error filter).
        $bad = New-TestNbdLoopDevice -Name 'failing' -Nbdkit '--filter=error', 'memory', '16M', 'error-pwrite=EIO', 'error-pwrite-rate=100%', "error-pwrite-file=$trigger"
        $good = New-TestLoopDevice -Name 'fail-good.img' -Size 16MB
        $data = New-TestLoopDevice -Name 'fail-data.img' -Size 16MB
        Write-RandomRegion -Path $data -Offset 0 -Length 16MB -Seed 130
        try {
            $mirror = New-MirrorDevice failing $good, $bad -NoSync -Confirm:$false
            (Start-RegionCopy $data $mirror -Length 4MB -Wait -Confirm:$false).State | Should -Be 'Completed'
            Get-TestSha256 $bad 0 4MB | Should -Be (Get-TestSha256 $data 0 4MB)

            New-Item -ItemType File $trigger | Out-Null
            $job = Start-RegionCopy $data $mirror -SourceOffset 4MB -DestinationOffset 4MB -Length 4MB -Wait -Confirm:$false
            $job.State | Should -Be 'Completed'   # acknowledged: the live leg took every write

            $status = Get-MirrorDevice failing
            $status.State | Should -Be 'Degraded'
            @($status.Legs.Health) | Should -Be @('Alive', 'Dead')
            Get-TestSha256 $good 0 8MB | Should -Be (Get-TestSha256 $data 0 8MB)
            (Start-RegionCopy $mirror $data -SourceOffset 4MB -DestinationOffset 12MB -Length 4MB -Wait -Confirm:$false -Force).State | Should -Be 'Completed'
            Get-TestSha256 $data 12MB 4MB | Should -Be (Get-TestSha256 $data 4MB 4MB)

            $waited = Wait-MirrorDevice failing -TimeoutSeconds 60 -WarningVariable warned -WarningAction SilentlyContinue
            $waited.State | Should -Be 'Degraded'
            $warned[0] | Should -Match 'degraded'
        } finally {
            Remove-Item $trigger -ErrorAction Ignore
            Remove-MirrorDevice failing -Confirm:$false
        }
    }
}
