# Findings of a hostile review, each as tests through the cmdlets on real loop devices, files and mounts: every
# refusal names its ErrorId, writes nothing (SHA-256 of the devices before and after), and leaves nothing open or
# claimed (the same devices can be taken as mirror legs, exclusively, right after).

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:ModulePath = (Resolve-Path "$PSScriptRoot/../../Kcopyd.psd1").Path

    function Get-DeviceHash([string] $Path, [long] $Length = 8MB) { Get-TestSha256 -Path $Path -Offset 0 -Length $Length }

    function Get-ErrorId([scriptblock] $ScriptBlock) {
        # The ErrorId of the error the block writes (non-terminating, so made to throw); a block that writes none fails the test.
        $ErrorActionPreference = 'Stop'
        ($ScriptBlock | Should -Throw -PassThru).FullyQualifiedErrorId
    }

    function Assert-LegsFree([string[]] $Path) {
        # Opens the devices exclusively (O_EXCL, or the OFD lock of an image) and claims them as legs: this fails
        # if a refused call left any of them open or claimed. -NoSync and a core log: nothing is written.
        $name = "free-$(Get-Random)"
        New-MirrorDevice $name $Path -NoSync -Confirm:$false -WarningAction SilentlyContinue | Out-Null
        Remove-MirrorDevice $name -Confirm:$false
    }

    function New-TestDirectory([string] $Mode) {
        $path = "/tmp/kcopyd-safety-$PID-$(Get-Random)"
        New-Item -ItemType Directory $path | Out-Null
        chmod $Mode $path
        $script:Directories.Add($path)
        $path
    }
    $script:Directories = [Collections.Generic.List[string]]::new()
}

AfterAll {
    Remove-TestLoopDevices   # stops the file's host first: its mirrors close, stacked ones first
    Remove-Module Kcopyd -ErrorAction Ignore
    foreach ($directory in $script:Directories) { Remove-Item $directory -Recurse -Force -ErrorAction Ignore }
}

Describe 'Finding 5: New-MirrorDevice -LogPath takes only a regular file of its own' {
    BeforeAll {
        $script:Legs = 1..2 | ForEach-Object { New-TestLoopDevice -Name "f5-leg$_.img" -Size 8MB }
        Write-RandomRegion -Path $Legs[0] -Offset 0 -Length 8MB -Seed 501
        Write-RandomRegion -Path $Legs[1] -Offset 0 -Length 8MB -Seed 502
        $script:LegHashes = $Legs | ForEach-Object { Get-DeviceHash $_ }
        $script:LogDir = Split-Path (New-TestImage -Name 'f5.marker' -Size 0)

        function Get-LogRefusal([string] $Log, [switch] $NoSync) {
            # In a runspace of its own with a deadline, so a log that blocks (a FIFO) fails the test, not the run.
            $run = Invoke-WithTimeout -Module $ModulePath -TimeoutSeconds 20 -ArgumentList $Legs, $Log, $NoSync.IsPresent -ScriptBlock {
                param($legs, $log, $noSync)
                try {
                    New-MirrorDevice f5 $legs -LogPath $log -NoSync:$noSync -Confirm:$false -ErrorAction Stop -WarningAction SilentlyContinue | Out-Null
                    Remove-MirrorDevice f5 -Confirm:$false
                    'created'
                } catch { $_.FullyQualifiedErrorId }
            }
            $run.Completed | Should -BeTrue -Because "New-MirrorDevice -LogPath '$Log' must return"
            $run.Output[-1]
        }
    }

    It 'refuses <Case> with InvalidLogPath, with and without -NoSync, writing nothing and leaving the legs free' -ForEach @(
        @{ Case = 'a loop device holding data'; Make = {
                $target = New-TestLoopDevice -Name 'f5-target.img' -Size 8MB
                Write-RandomRegion -Path $target -Offset 0 -Length 8MB -Seed 503
                @{ Log = $target; Watch = $target } } }
        @{ Case = 'a FIFO'; Make = {
                $fifo = Join-Path $LogDir 'f5.fifo'
                mkfifo -m 0600 $fifo
                @{ Log = $fifo } } }
        @{ Case = '/dev/null'; Make = { @{ Log = '/dev/null' } } }
        @{ Case = "an unprivileged user's symlink to a loop device, in a sticky directory"; Make = {
                $target = New-TestLoopDevice -Name 'f5-linked.img' -Size 8MB
                Write-RandomRegion -Path $target -Offset 0 -Length 8MB -Seed 504
                $sticky = New-TestDirectory 1777
                setpriv --reuid=65534 --regid=65534 --clear-groups ln -s $target "$sticky/x.log"
                (Get-Item "$sticky/x.log").LinkTarget | Should -Be $target
                @{ Log = "$sticky/x.log"; Watch = $target } } }
        @{ Case = "an unprivileged user's symlink into a root-only directory"; Make = {
                $private = New-TestDirectory 0700
                $sticky = New-TestDirectory 1777
                setpriv --reuid=65534 --regid=65534 --clear-groups ln -s "$private/x.log" "$sticky/x.log"
                @{ Log = "$sticky/x.log"; EmptyDir = $private } } }
    ) {
        $made = & $Make
        $watched = if ($made.Watch) { Get-DeviceHash $made.Watch }
        Get-LogRefusal $made.Log | Should -BeLike 'InvalidLogPath,*'
        Get-LogRefusal $made.Log -NoSync | Should -BeLike 'InvalidLogPath,*'

        $Legs | ForEach-Object { Get-DeviceHash $_ } | Should -Be $LegHashes
        if ($made.Watch) { Get-DeviceHash $made.Watch | Should -Be $watched }
        if ($made.EmptyDir) { @(Get-ChildItem -Force $made.EmptyDir) | Should -BeNullOrEmpty }
        Get-MirrorDevice | Should -BeNullOrEmpty
        Assert-LegsFree $Legs
    }

    It 'refuses a mounted device with InvalidLogPath and leaves its filesystem as it was' {
        Invoke-WithMountedLoopDevice -Name 'f5-mounted.img' -ReadOnly -ScriptBlock {
            param($disk)
            $before = Get-TestSha256 $disk 0 64KB
            Get-LogRefusal $disk | Should -BeLike 'InvalidLogPath,*'
            Get-LogRefusal $disk -NoSync | Should -BeLike 'InvalidLogPath,*'
            Get-TestSha256 $disk 0 64KB | Should -Be $before
        }
        $Legs | ForEach-Object { Get-DeviceHash $_ } | Should -Be $LegHashes
        Assert-LegsFree $Legs
    }

    It 'refuses an image-file leg given as its own log with InvalidLogPath, even forced and with -ResetLog' {
        $images = 1..2 | ForEach-Object { New-TestImage -Name "f5-own$_.img" -Size 8MB }
        Write-RandomRegion -Path $images[0] -Offset 0 -Length 8MB -Seed 505
        Write-RandomRegion -Path $images[1] -Offset 0 -Length 8MB -Seed 506
        $before = $images | ForEach-Object { Get-DeviceHash $_ }
        foreach ($extra in @{}, @{ NoSync = $true }, @{ Force = $true }, @{ Force = $true; ResetLog = $true }) {
            $id = Get-ErrorId { New-MirrorDevice f5own $images -LogPath $images[1] @extra -Confirm:$false -WarningAction SilentlyContinue }
            $id | Should -BeLike 'InvalidLogPath,*' -Because "the leg is the log ($($extra.Keys -join ', '))"
            $images | ForEach-Object { Get-DeviceHash $_ } | Should -Be $before
        }
        Get-MirrorDevice | Should -BeNullOrEmpty
        Assert-LegsFree $images
    }

    It 'refuses the backing file of a loop-device leg as the log with InvalidLogPath' {
        $loop = New-TestLoopDevice -Name 'f5-backed.img' -Size 8MB
        $backing = (losetup -nO BACK-FILE $loop).Trim()
        Write-RandomRegion -Path $backing -Offset 0 -Length 8MB -Seed 507
        chmod 0644 $backing
        $before = Get-DeviceHash $backing
        foreach ($extra in @{}, @{ NoSync = $true }, @{ Force = $true; ResetLog = $true }) {
            $id = Get-ErrorId { New-MirrorDevice f5backed $Legs[0], $loop -LogPath $backing @extra -Confirm:$false -WarningAction SilentlyContinue }
            $id | Should -BeLike 'InvalidLogPath,*' -Because "the log is the file under a leg ($($extra.Keys -join ', '))"
            Get-DeviceHash $backing | Should -Be $before
            (Get-Item $backing).UnixMode | Should -Be '-rw-r--r--' -Because 'a refused log is not even made 0600'
        }
        Get-DeviceHash $Legs[0] | Should -Be $LegHashes[0]
        Assert-LegsFree $Legs[0], $loop
    }

    It 'refuses a log on a filesystem mounted from a leg with InvalidLogPath, and leaves no log file behind' {
        Invoke-WithMountedLoopDevice -Name 'f5-legfs.img' -ScriptBlock {
            param($disk)
            $mountPoint = (findmnt -nro TARGET --source $disk | Select-Object -First 1).Trim()
            # The leg is mounted, so only -Force takes it at all; the log must still be refused.
            try {
                $id = Get-ErrorId { New-MirrorDevice f5legfs $Legs[0], $disk -LogPath "$mountPoint/x.log" -NoSync -Force -Confirm:$false -WarningAction SilentlyContinue }
                $id | Should -BeLike 'InvalidLogPath,*'
                Test-Path "$mountPoint/x.log" | Should -BeFalse
            } finally {
                # Should it be taken after all, its log keeps the filesystem busy: the mirror goes before the unmount.
                Remove-MirrorDevice f5legfs -Confirm:$false -ErrorAction Ignore
            }
        }
        Get-DeviceHash $Legs[0] | Should -Be $LegHashes[0]
        Get-MirrorDevice | Should -BeNullOrEmpty
    }

    It 'creates a new log with mode 0600, and makes an existing one 0600 again' {
        $log = Join-Path $LogDir 'f5-new.log'
        try {
            New-MirrorDevice f5new $Legs -LogPath $log -NoSync -Confirm:$false -WarningAction SilentlyContinue | Out-Null
            (Get-Item $log).UnixMode | Should -Be '-rw-------'
            Remove-MirrorDevice f5new -Confirm:$false
            chmod 0644 $log
            New-MirrorDevice f5new $Legs -LogPath $log -NoSync -Confirm:$false -WarningAction SilentlyContinue | Out-Null
            (Get-Item $log).UnixMode | Should -Be '-rw-------'
        } finally {
            Remove-MirrorDevice f5new -Confirm:$false -ErrorAction Ignore
            Remove-Item $log -ErrorAction Ignore
        }
        $Legs | ForEach-Object { Get-DeviceHash $_ } | Should -Be $LegHashes
    }
}

Describe 'Finding 6: the image-file legs of a live mirror are written only through the mirror' {
    BeforeAll {
        $script:Images = 1..2 | ForEach-Object { New-TestImage -Name "f6-leg$_.img" -Size 8MB }
        $script:Data = New-TestImage -Name 'f6-data.img' -Size 8MB
        $script:Other = New-TestImage -Name 'f6-other.img' -Size 8MB
        Write-RandomRegion -Path $Images[0] -Offset 0 -Length 8MB -Seed 601
        Write-RandomRegion -Path $Data -Offset 0 -Length 8MB -Seed 602
        $script:Mirror = New-MirrorDevice f6 $Images -Confirm:$false
        (Wait-MirrorDevice f6 -TimeoutSeconds 60).State | Should -Be 'InSync'
        $script:Synced = Get-DeviceHash $Images[0]
        Get-DeviceHash $Images[1] | Should -Be $Synced

        function Assert-MirrorIntact {
            (Get-MirrorDevice f6).State | Should -Be 'InSync'
            $Images | ForEach-Object { Get-DeviceHash $_ } | Should -Be @($Synced, $Synced)
            @(Test-MirrorDevice f6) | Should -BeNullOrEmpty
        }
    }

    AfterAll { Remove-MirrorDevice f6 -Confirm:$false -ErrorAction Ignore }

    # The mirror holds the image's OFD write lock, so the copy's exclusive open fails on it; the host then finds whose
    # leg the image is and says so (LegInUse, naming the mirror), rather than blaming "another writer".
    It 'refuses a copy into a leg image with LegInUse, naming the mirror' {
        $err = { Start-RegionCopy $Data $Images[1] -Length 1MB -Wait -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike 'LegInUse,*'
        $err.Exception.Message | Should -BeLike "*a leg of mirror 'f6'*"
        Assert-MirrorIntact
    }

    It 'refuses a copy from the mirror into its own leg image' {
        Get-ErrorId { Start-RegionCopy $Mirror $Images[1] -SourceOffset 1MB -Length 1MB -Wait -Confirm:$false } | Should -BeLike 'LegInUse,*'
        Get-ErrorId { Start-RegionCopy $Mirror $Images[0] -Length 1MB -DestinationOffset 4MB -Wait -Confirm:$false } | Should -BeLike 'LegInUse,*'
        Assert-MirrorIntact
    }

    It 'refuses a second mirror on a leg image in another pwsh process with LegInUse' {
        # The child prints the ErrorId of each attempt: the leg as a second leg, as a first leg, and as a copy's destination.
        $command = "foreach (`$legs in @('$($Images[1])', '$Other'), @('$Other', '$($Images[0])')) { " +
            "try { New-MirrorDevice child `$legs -NoSync -Confirm:`$false -ErrorAction Stop | Out-Null; 'created' } catch { `$_.FullyQualifiedErrorId } }; " +
            "try { Start-RegionCopy '$Data' '$($Images[1])' -Length 1MB -Wait -Confirm:`$false -ErrorAction Stop | Out-Null; 'copied' } catch { `$_.FullyQualifiedErrorId }"
        $ids = Invoke-KcopydInChild $command
        $ids.Count | Should -Be 3
        $ids[0] | Should -BeLike 'LegInUse,*'
        $ids[1] | Should -BeLike 'LegInUse,*'
        $ids[2] | Should -BeLike 'LegInUse,*'
        Assert-MirrorIntact
    }

    # -Force skips the writer's lock, but every mirror also claims its legs with a lock of its own, which another
    # process sees: a second mirror there is refused even with -Force.
    It 'refuses a forced second mirror on a leg image in another pwsh process with LegInUse' {
        $command = "try { New-MirrorDevice child '$Other', '$($Images[1])' -Force -Confirm:`$false -ErrorAction Stop | Out-Null; " +
            "Wait-MirrorDevice child -TimeoutSeconds 30 | Out-Null; 'created' } catch { `$_.FullyQualifiedErrorId }"
        @(Invoke-KcopydInChild $command)[-1] | Should -BeLike 'LegInUse,*'
        Assert-MirrorIntact
    }
}

Describe 'Finding 7: overlap through another name for the same storage' {
    BeforeAll {
        $script:Loop = New-TestLoopDevice -Name 'f7-loop.img' -Size 8MB
        $script:Backing = (losetup -nO BACK-FILE $Loop).Trim()
        Write-RandomRegion -Path $Backing -Offset 0 -Length 8MB -Seed 701
        $script:Wide = New-TestImage -Name 'f7-wide.img' -Size 16MB
        Write-RandomRegion -Path $Wide -Offset 0 -Length 16MB -Seed 702
        # The window is bytes 4 MiB to 8 MiB of the wide file.
        $script:Window = Add-TestLoopDevice -Image $Wide -Offset 4MB -SizeLimit 4MB
    }

    It 'refuses a copy between a loop device and its own backing file over the same bytes with OverlappingRegion' {
        $before = Get-DeviceHash $Backing
        Get-ErrorId { Start-RegionCopy $Loop $Backing -DestinationOffset 1MB -Length 2MB -Wait -Confirm:$false } | Should -BeLike 'OverlappingRegion,*'
        Get-ErrorId { Start-RegionCopy $Backing $Loop -SourceOffset 1MB -Length 2MB -Wait -Confirm:$false } | Should -BeLike 'OverlappingRegion,*'
        Get-DeviceHash $Backing | Should -Be $before
        Assert-LegsFree $Loop, $Window
    }

    It 'refuses a copy into the part of a file under an offset loop device, and allows one beside it' {
        $before = Get-DeviceHash $Wide 16MB
        $beforeCopy = New-TestImage -Name 'f7-wide-before.img' -Size 16MB
        Copy-Item $Wide $beforeCopy -Force
        # The copy reads the window's first MiB, bytes 4 to 5 MiB of the file: a destination sharing any of them is refused.
        foreach ($offset in 4MB, 4.5MB, 3.5MB) {
            Get-ErrorId { Start-RegionCopy $Window $Wide -Length 1MB -DestinationOffset $offset -Wait -Confirm:$false } |
                Should -BeLike 'OverlappingRegion,*' -Because "the file's MiB at $offset shares bytes with the window's first MiB"
        }
        Get-ErrorId { Start-RegionCopy $Wide $Window -SourceOffset 5MB -DestinationOffset 0 -Length 2MB -Wait -Confirm:$false } |
            Should -BeLike 'OverlappingRegion,*'
        Get-DeviceHash $Wide 16MB | Should -Be $before

        # Right before those bytes, right after them (still inside the window) and far away: other bytes, so allowed.
        $source = Get-TestSha256 $Wide 4MB 1MB
        foreach ($offset in 3MB, 5MB, 12MB) {
            (Start-RegionCopy $Window $Wide -Length 1MB -DestinationOffset $offset -Wait -Confirm:$false).State | Should -Be 'Completed'
            Get-TestSha256 $Wide $offset 1MB | Should -Be $source
        }
        Get-TestSha256 $Wide 0 3MB | Should -Be (Get-TestSha256 -Path $beforeCopy -Offset 0 -Length 3MB)
    }

    It 'refuses a mirror whose legs are a loop device and its own backing file with DuplicateDevice' {
        $before = Get-DeviceHash $Backing
        foreach ($legs in @($Loop, $Backing), @($Backing, $Loop)) {
            Get-ErrorId { New-MirrorDevice f7 $legs -Confirm:$false } | Should -BeLike 'DuplicateDevice,*'
            Get-ErrorId { New-MirrorDevice f7 $legs -NoSync -Confirm:$false } | Should -BeLike 'DuplicateDevice,*'
        }
        Get-DeviceHash $Backing | Should -Be $before
        Get-MirrorDevice | Should -BeNullOrEmpty
        Assert-LegsFree $Loop, $Window
        Assert-LegsFree $Backing, $Window
    }
}

Describe 'Finding 8: LegHoldsData guards a leg the recovery would overwrite' {
    BeforeAll {
        function New-Ext4LoopDevice([string] $Name) {
            $device = New-TestLoopDevice -Name $Name -Size 16MB
            mkfs.ext4 -q -F $device
            $device
        }
    }

    It 'refuses a second leg holding ext4 with LegHoldsData, writing nothing, and takes it with -Force' {
        $first = New-TestLoopDevice -Name 'f8-first.img' -Size 16MB
        Write-RandomRegion -Path $first -Offset 0 -Length 16MB -Seed 801
        $fs = New-Ext4LoopDevice 'f8-ext4.img'
        $before = $first, $fs | ForEach-Object { Get-DeviceHash $_ 16MB }
        Get-ErrorId { New-MirrorDevice f8 $first, $fs -Confirm:$false } | Should -BeLike 'LegHoldsData,*'
        $first, $fs | ForEach-Object { Get-DeviceHash $_ 16MB } | Should -Be $before
        Get-MirrorDevice | Should -BeNullOrEmpty
        Assert-LegsFree $first, $fs
        try {
            New-MirrorDevice f8 $first, $fs -Force -Confirm:$false | Out-Null
            (Wait-MirrorDevice f8 -TimeoutSeconds 60).State | Should -Be 'InSync'
        } finally { Remove-MirrorDevice f8 -Confirm:$false -ErrorAction Ignore }
        Get-DeviceHash $fs 16MB | Should -Be $before[0]
    }

    It 'refuses a live mirror holding data as the second leg of a stacked mirror, and syncs it as the first' {
        $x, $y, $z = 1..3 | ForEach-Object { New-TestLoopDevice -Name "f8-stack$_.img" -Size 8MB }
        Write-RandomRegion -Path $x -Offset 0 -Length 8MB -Seed 802
        Write-RandomRegion -Path $z -Offset 0 -Length 8MB -Seed 803
        $data = Get-DeviceHash $x
        $zBefore = Get-DeviceHash $z
        try {
            $inner = New-MirrorDevice f8inner $x, $y -Confirm:$false
            (Wait-MirrorDevice f8inner -TimeoutSeconds 60).State | Should -Be 'InSync'
            Get-ErrorId { New-MirrorDevice f8outer -Leg $z, $inner -Confirm:$false } | Should -BeLike 'LegHoldsData,*'
            $x, $y, $z | ForEach-Object { Get-DeviceHash $_ } | Should -Be @($data, $data, $zBefore)
            @(Get-MirrorDevice).Name | Should -Be @('f8inner')

            New-MirrorDevice f8outer -Leg $inner, $z -Confirm:$false | Out-Null
            (Wait-MirrorDevice f8outer -TimeoutSeconds 60).State | Should -Be 'InSync'
            $x, $y, $z | ForEach-Object { Get-DeviceHash $_ } | Should -Be @($data, $data, $data)
        } finally {
            Remove-MirrorDevice f8outer -Confirm:$false -ErrorAction Ignore
            Remove-MirrorDevice f8inner -Confirm:$false -ErrorAction Ignore
        }
    }

    It 're-creates a mirror from its own log without -Force although its second leg now holds ext4' {
        $first = New-Ext4LoopDevice 'f8-log-first.img'
        $second = New-TestLoopDevice -Name 'f8-log-second.img' -Size 16MB
        $log = Join-Path (Split-Path (New-TestImage -Name 'f8.marker' -Size 0)) 'f8.log'
        try {
            New-MirrorDevice f8log $first, $second -LogPath $log -Confirm:$false | Out-Null
            (Wait-MirrorDevice f8log -TimeoutSeconds 60).State | Should -Be 'InSync'
            Remove-MirrorDevice f8log -Confirm:$false
            $data = Get-DeviceHash $first 16MB
            Get-DeviceHash $second 16MB | Should -Be $data

            # Without the log nothing says the filesystem on the second leg is the mirror's own copy.
            Get-ErrorId { New-MirrorDevice f8log $first, $second -Confirm:$false } | Should -BeLike 'LegHoldsData,*'
            $again = New-MirrorDevice f8log $first, $second -LogPath $log -Confirm:$false
            $again.State | Should -Be 'InSync'
            $again.LogKind | Should -Be 'disk'
            $first, $second | ForEach-Object { Get-DeviceHash $_ 16MB } | Should -Be @($data, $data)
        } finally {
            Remove-MirrorDevice f8log -Confirm:$false -ErrorAction Ignore
            Remove-Item $log -ErrorAction Ignore
        }
    }

    It 'warns about -NoSync over legs that differ, and not over identical ones' {
        $a, $b, $c = 1..3 | ForEach-Object { New-TestLoopDevice -Name "f8-nosync$_.img" -Size 8MB }
        Write-RandomRegion -Path $a -Offset 0 -Length 8MB -Seed 804
        Write-RandomRegion -Path $b -Offset 0 -Length 8MB -Seed 805
        Write-RandomRegion -Path $c -Offset 0 -Length 8MB -Seed 804
        try {
            New-MirrorDevice f8differ $a, $b -NoSync -Confirm:$false -WarningVariable differ -WarningAction SilentlyContinue | Out-Null
            @($differ).Count | Should -Be 1
            "$($differ[0])" | Should -Match '-NoSync'
            Remove-MirrorDevice f8differ -Confirm:$false
            New-MirrorDevice f8same $a, $c -NoSync -Confirm:$false -WarningVariable same -WarningAction SilentlyContinue | Out-Null
            @($same) | Should -BeNullOrEmpty
        } finally {
            Remove-MirrorDevice f8differ, f8same -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'Leg cmdlets under -WhatIf, and for an unknown mirror or leg' {
    BeforeAll {
        $script:Pair = 1..2 | ForEach-Object { New-TestLoopDevice -Name "w-leg$_.img" -Size 8MB }
        $script:Spare = New-TestLoopDevice -Name 'w-spare.img' -Size 8MB
        Write-RandomRegion -Path $Pair[0] -Offset 0 -Length 8MB -Seed 901
        Write-RandomRegion -Path $Pair[1] -Offset 0 -Length 8MB -Seed 902   # differs: Test-MirrorDevice -Repair would rewrite it
        Write-RandomRegion -Path $Spare -Offset 0 -Length 8MB -Seed 903
        New-MirrorDevice w $Pair -NoSync -Confirm:$false -WarningAction SilentlyContinue | Out-Null
        $script:Before = $Pair + $Spare | ForEach-Object { Get-DeviceHash $_ }

        function Assert-Unchanged {
            $Pair + $Spare | ForEach-Object { Get-DeviceHash $_ } | Should -Be $Before
            @((Get-MirrorDevice w).Legs.Path) | Should -Be $Pair
            # The spare was not kept open or claimed: it can become a leg (with the scratch device) right away.
            Assert-LegsFree $Spare, (New-TestLoopDevice -Name "w-scratch-$(Get-Random).img" -Size 8MB)
        }
    }

    AfterAll { Remove-MirrorDevice w -Confirm:$false -ErrorAction Ignore }

    It '<Command> -WhatIf changes nothing' -ForEach @(
        @{ Command = 'Add-MirrorLeg'; Run = { Add-MirrorLeg w $Spare -WhatIf } }
        @{ Command = 'Remove-MirrorLeg'; Run = { Remove-MirrorLeg w $Pair[1] -WhatIf } }
        @{ Command = 'Repair-MirrorDevice -ReplaceLeg -NewLeg'; Run = { Repair-MirrorDevice w -ReplaceLeg $Pair[1] -NewLeg $Spare -WhatIf } }
        @{ Command = 'Test-MirrorDevice -Repair'; Run = { Test-MirrorDevice w -Repair -WhatIf } }
    ) {
        & $Run | Out-Null
        Assert-Unchanged
        @(Test-MirrorDevice w -WarningAction SilentlyContinue).Count | Should -BeGreaterThan 0 -Because 'the legs still differ'
    }

    It '<Command> fails with <ErrorId> and changes nothing' -ForEach @(
        @{ Command = 'Add-MirrorLeg on an unknown mirror'; ErrorId = 'MirrorNotFound'; Run = { Add-MirrorLeg nosuch $Spare -Confirm:$false } }
        @{ Command = 'Remove-MirrorLeg on an unknown mirror'; ErrorId = 'MirrorNotFound'; Run = { Remove-MirrorLeg nosuch $Pair[1] -Confirm:$false } }
        @{ Command = 'Repair-MirrorDevice on an unknown mirror'; ErrorId = 'MirrorNotFound'; Run = { Repair-MirrorDevice nosuch -Confirm:$false } }
        @{ Command = 'Repair-MirrorDevice -ReplaceLeg on an unknown mirror'; ErrorId = 'MirrorNotFound'; Run = { Repair-MirrorDevice nosuch -ReplaceLeg $Pair[1] -NewLeg $Spare -Confirm:$false } }
        @{ Command = 'Test-MirrorDevice -Repair on an unknown mirror'; ErrorId = 'MirrorNotFound'; Run = { Test-MirrorDevice nosuch -Repair -Confirm:$false } }
        @{ Command = 'Remove-MirrorLeg of an unknown leg'; ErrorId = 'LegNotFound'; Run = { Remove-MirrorLeg w $Spare -Confirm:$false } }
        @{ Command = 'Repair-MirrorDevice -ReplaceLeg of an unknown leg'; ErrorId = 'LegNotFound'; Run = { Repair-MirrorDevice w -ReplaceLeg /dev/nosuch -NewLeg $Spare -Confirm:$false } }
        @{ Command = 'Remove-MirrorLeg of an unknown leg under -WhatIf'; ErrorId = 'LegNotFound'; Run = { Remove-MirrorLeg w $Spare -WhatIf } }
        @{ Command = 'Repair-MirrorDevice -ReplaceLeg of an unknown leg under -WhatIf'; ErrorId = 'LegNotFound'; Run = { Repair-MirrorDevice w -ReplaceLeg /dev/nosuch -NewLeg $Spare -WhatIf } }
    ) {
        Get-ErrorId $Run | Should -BeLike "$ErrorId,*"
        Assert-Unchanged
    }
    It 'closes a leg that leaves by its stable id (Remove-MirrorLeg, Repair-MirrorDevice -ReplaceLeg), so it can be opened again' {
        $legs = 1..3 | ForEach-Object { New-TestLoopDevice -Name "w-id$_.img" -Size 8MB }
        $new = New-TestLoopDevice -Name 'w-id-new.img' -Size 8MB
        try {
            New-MirrorDevice wid $legs -NoSync -Confirm:$false | Out-Null
            $ids = @((Get-MirrorDevice wid).Legs.StableId)
            $ids[2] | Should -Not -Be $legs[2]
            Remove-MirrorLeg wid $ids[2] -Confirm:$false | Out-Null
            @((Get-MirrorDevice wid).Legs.Path) | Should -Be $legs[0..1]
            Assert-LegsFree $legs[2], $new
            Repair-MirrorDevice wid -ReplaceLeg $ids[1] -NewLeg $new -Confirm:$false | Out-Null
            @((Get-MirrorDevice wid).Legs.Path) | Should -Be @($legs[0], $new)
            Assert-LegsFree $legs[1], $legs[2]
        } finally {
            Remove-MirrorDevice wid -Confirm:$false -ErrorAction Ignore
        }
    }
}
