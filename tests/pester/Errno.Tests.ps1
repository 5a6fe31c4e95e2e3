# A failed read or write keeps its errno up to the admin: the job's Error names it, the job's Errno carries it and
# the error record's category fits, on real devices that fail the way disks do (full, failing, read-only, gone).
BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Source = New-TestLoopDevice -Name 'errno-src.img' -Size 32MB
    Write-RandomRegion -Path $Source -Offset 0 -Length 32MB -Seed 151
    $script:Mounts = [Collections.Generic.List[string]]::new()
    $script:InnerLoops = [Collections.Generic.List[string]]::new()

    # A small ext4 filesystem, mounted in a directory of its own (-ReadOnly: mounted read-only after the image
    # file was made), holding a sparse image larger than its free space.
    function New-ImageOnSmallFilesystem([string] $Name, [switch] $ReadOnly) {
        $disk = New-TestLoopDevice -Name "$Name-fs.img" -Size 12MB
        mkfs.ext4 -q -F $disk
        $mountPoint = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-errno-$PID-$(Get-Random)"
        New-Item -ItemType Directory $mountPoint | Out-Null
        mount $disk $mountPoint
        $script:Mounts.Add($mountPoint)
        $image = Join-Path $mountPoint 'image'
        $file = [IO.File]::Create($image); $file.SetLength(32MB); $file.Dispose()
        if ($ReadOnly) { mount -o remount,ro $mountPoint }
        $image
    }

    # A loop device over that image: its writes fail with ENOSPC once the filesystem under it is full.
    function New-FullDisk([string] $Name) {
        $device = losetup --find --show (New-ImageOnSmallFilesystem $Name)
        if ($LASTEXITCODE) { throw "losetup failed for $Name" }
        $script:InnerLoops.Add($device)
        $device
    }

    # The job a command gave and the first error record it wrote.
    function Get-Failure([scriptblock] $Run) {
        $all = @(& $Run 2>&1)
        [pscustomobject]@{ Job = @($all | Where-Object { $_ -isnot [Management.Automation.ErrorRecord] })[0]; Record = @($all | Where-Object { $_ -is [Management.Automation.ErrorRecord] })[0] }
    }
}

AfterAll {
    Stop-TestHost
    foreach ($device in $script:InnerLoops) { losetup -d $device 2>$null }
    foreach ($mountPoint in $script:Mounts) {
        foreach ($attempt in 1..5) {
            umount $mountPoint 2>$null
            if (-not $LASTEXITCODE) { break }
            Start-Sleep -Milliseconds (100 * $attempt)
        }
        if ($LASTEXITCODE) { umount -l $mountPoint 2>$null }
        Remove-Item $mountPoint -Force -ErrorAction Ignore
    }
    Remove-TestLoopDevices
}

Describe 'ENOSPC' {
    It 'a copy onto a full filesystem fails with ENOSPC, not EIO, in the job and its error record' {
        $full = New-FullDisk 'errno-copy'
        $result = Get-Failure { Start-RegionCopy $Source $full -Wait -Confirm:$false }
        $result.Job.State | Should -Be 'Failed'
        $result.Job.Errno | Should -Be 'ENOSPC'
        $result.Job.WriteErrors | Should -Be @($full)
        $result.Job.Error | Should -BeLike "*Writing '$full' failed: No space left on device (ENOSPC).*"
        $result.Job.Error | Should -Not -Match 'EIO|Input/output'
        $result.Record.FullyQualifiedErrorId | Should -BeLike 'CopyWriteFailed,*'
        $result.Record.CategoryInfo.Category | Should -Be 'WriteError'
        $result.Record.Exception.Message | Should -Match '\(ENOSPC\)'
        $result.Record.TargetObject.Errno | Should -Be 'ENOSPC'
        (Get-CopyJob -Id $result.Job.Id).Errno | Should -Be 'ENOSPC'
    }

    It 'Clear-Region of a disk on a full filesystem says ENOSPC (the loop driver gives EIO for the zero-out)' {
        $full = New-FullDisk 'errno-clear'
        # Data first, so the filesystem has no room for the zeros the clear writes after it.
        (Start-RegionCopy $Source $full -Length 4MB -Wait -Confirm:$false).State | Should -Be 'Completed'
        $image = (Get-LoopBacking | Where-Object Device -eq $full).BackingFile
        $fill = Join-Path (Split-Path $image) 'fill'
        dd if=/dev/zero of=$fill bs=1M 2>$null
        $result = Get-Failure { Clear-Region $full 0 32MB -Wait -Confirm:$false }
        $result.Job.State | Should -Be 'Failed'
        $result.Job.Errno | Should -Be 'ENOSPC'
        $result.Job.Error | Should -Match 'No space left on device \(ENOSPC\)'
        $result.Record.FullyQualifiedErrorId | Should -BeLike 'CopyWriteFailed,*'
        $result.Record.CategoryInfo.Category | Should -Be 'WriteError'
        $result.Record.Exception.Message | Should -Match '\(ENOSPC\)'
    }

    It 'ENOSPC from a disk that says it is full (nbdkit) reaches the job the same way' {
        $disk = New-TestNbdLoopDevice -Name 'errno-nospc' -Nbdkit '--filter=error', 'memory', '16M', 'error-pwrite=ENOSPC', 'error-pwrite-rate=100%'
        $result = Get-Failure { Start-RegionCopy $Source $disk -Length 8MB -Wait -Confirm:$false }
        $result.Job.State | Should -Be 'Failed'
        $result.Job.Errno | Should -Be 'ENOSPC'
        $result.Record.Exception.Message | Should -Match 'No space left on device \(ENOSPC\)'
    }
}

Describe 'EIO' {
    BeforeAll { $script:Failing = New-FailingDisk 'errno-eio' -Size '16M' }

    It 'a failing write says EIO' {
        New-Item -ItemType File $Failing.FailWrites | Out-Null
        try {
            $result = Get-Failure { Start-RegionCopy $Source $Failing.Device -Length 8MB -Wait -Confirm:$false }
        } finally { Remove-Item $Failing.FailWrites }
        $result.Job.State | Should -Be 'Failed'
        $result.Job.Errno | Should -Be 'EIO'
        $result.Job.Error | Should -BeLike "*Writing '$($Failing.Device)' failed: Input/output error (EIO).*"
        $result.Record.FullyQualifiedErrorId | Should -BeLike 'CopyWriteFailed,*'
        $result.Record.CategoryInfo.Category | Should -Be 'WriteError'
    }

    It 'a failing read says EIO, as a read error' {
        New-Item -ItemType File $Failing.FailReads | Out-Null
        try {
            $result = Get-Failure { Start-RegionCopy $Failing.Device $Source -Length 8MB -Wait -Confirm:$false }
        } finally { Remove-Item $Failing.FailReads }
        $result.Job.State | Should -Be 'Failed'
        $result.Job.ReadError | Should -BeTrue
        $result.Job.Errno | Should -Be 'EIO'
        $result.Job.Error | Should -Match "Reading '.*' failed: Input/output error \(EIO\)"
        $result.Record.FullyQualifiedErrorId | Should -BeLike 'CopyReadFailed,*'
        $result.Record.CategoryInfo.Category | Should -Be 'ReadError'
    }
}

Describe 'Read-only destinations' {
    It 'a read-only block device refuses the writes with EPERM (what Linux returns for it), as PermissionDenied' {
        $image = New-TestImage -Name 'errno-ro.img' -Size 16MB
        $readOnly = losetup -r --find --show $image
        $script:InnerLoops.Add($readOnly)
        $result = Get-Failure { Clear-Region $readOnly 0 1MB -Wait -Confirm:$false }
        $result.Job.State | Should -Be 'Failed'
        $result.Job.Errno | Should -Be 'EPERM'
        $result.Record.FullyQualifiedErrorId | Should -BeLike 'CopyWriteFailed,*'
        $result.Record.CategoryInfo.Category | Should -Be 'PermissionDenied'
        $result.Record.Exception.Message | Should -Match '\(EPERM\)'
    }

    It 'an image file on a read-only filesystem is refused at open, naming EROFS' {
        $image = New-ImageOnSmallFilesystem 'errno-rofs' -ReadOnly
        $result = Get-Failure { Start-RegionCopy $Source $image -Length 1MB -Wait -Confirm:$false }
        $result.Job | Should -BeNullOrEmpty
        $result.Record.FullyQualifiedErrorId | Should -BeLike 'DeviceAccessDenied,*'
        $result.Record.CategoryInfo.Category | Should -Be 'PermissionDenied'
        $result.Record.Exception.Message | Should -BeLike "*Cannot open '$image': Read-only file system (EROFS).*"
    }
}

Describe 'A device gone mid-copy' {
    It 'the copy fails with the errno the kernel gives (EIO through the loop driver) and names it' {
        $disk = New-TestNbdLoopDevice -Name 'errno-gone' -Nbdkit '--filter=delay', 'memory', '32M', 'wdelay=10ms'
        $job = Start-RegionCopy $Source $disk -BytesPerSecond 4MB -Confirm:$false
        Start-Sleep -Seconds 1
        (Get-CopyJob -Id $job.Id).State | Should -Be 'Running'
        # The nbdkit behind this disk's nbdfuse, found by its parent and its command line.
        $fuse = @(pgrep -f "^nbdfuse $([regex]::Escape((Get-LoopBacking | Where-Object Device -eq $disk).BackingFile))")
        $fuse.Count | Should -Be 1
        $server = @(pgrep -P $fuse[0] -f '^nbdkit --filter=delay memory 32M')
        $server.Count | Should -Be 1
        Stop-Process -Id $server[0] -Force
        $records = $null
        $ended = Wait-CopyJob -Id $job.Id -Timeout 30 -ErrorVariable records -ErrorAction SilentlyContinue
        $ended.State | Should -Be 'Failed'
        $ended.Errno | Should -Be 'EIO'
        $ended.Error | Should -Match 'Input/output error \(EIO\)'
        @($records)[0].FullyQualifiedErrorId | Should -BeLike 'CopyWriteFailed,*'
    }
}

Describe 'A mirror leg failing with ENOSPC' {
    It 'is a failed leg as with EIO, and the warning names ENOSPC' {
        $trigger = Join-Path (Split-Path (New-TestImage -Name 'errno-leg.marker' -Size 0)) 'errno-leg.full'
        $full = New-TestNbdLoopDevice -Name 'errno-leg' -Nbdkit '--filter=error', 'memory', '16M',
            'error-pwrite=ENOSPC', 'error-pwrite-rate=100%', "error-pwrite-file=$trigger"
        $other = New-TestLoopDevice -Name 'errno-leg2.img' -Size 16MB
        try {
            New-MirrorDevice errno1 $full, $other -NoSync -Confirm:$false | Out-Null
            New-Item -ItemType File $trigger | Out-Null
            $warned = $null
            $job = Start-RegionCopy $Source (Get-MirrorDevice errno1) -Length 4MB -Wait -Confirm:$false -WarningVariable warned -WarningAction SilentlyContinue
            $job.State | Should -Be 'Completed'
            $status = Get-MirrorDevice errno1
            $status.State | Should -Be 'Degraded'
            @($status.Legs.Health) | Should -Be @('Dead', 'Alive')
            ($warned -join "`n") | Should -Match "Leg '$([regex]::Escape($full))' failed a write \(No space left on device \(ENOSPC\)\) and is dead"
            (Get-TestSha256 $other 0 4MB) | Should -Be (Get-TestSha256 $Source 0 4MB)
        } finally {
            Remove-Item $trigger -ErrorAction Ignore
            Remove-MirrorDevice errno1 -Confirm:$false -ErrorAction Ignore
        }
    }
}
