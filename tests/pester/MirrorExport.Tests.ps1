BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
}

AfterAll {
    Remove-TestLoopDevices   # stops the file's host first: its exports end, its mirrors close
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Publish-MirrorDevice on a Unix socket' {
    BeforeAll {
        $script:Legs = @(New-TestLoopDevice -Name 'x1-a.img' -Size 16MB; New-TestLoopDevice -Name 'x1-b.img' -Size 16MB)
        New-MirrorDevice x1 $script:Legs -RegionSize 256KB -Confirm:$false | Out-Null
        (Wait-MirrorDevice x1 -TimeoutSeconds 60).State | Should -Be 'InSync'
        $script:Export = Publish-MirrorDevice x1 -Confirm:$false
    }
    AfterAll { Remove-MirrorDevice x1 -Force -Confirm:$false -ErrorAction Ignore }

    It 'serves on a 0600 socket in the runtime directory, and Get-MirrorDevice shows the URI' {
        $script:Export.Uri | Should -Be "nbd+unix:///?socket=$($script:Export.UnixSocket)"
        Split-Path $script:Export.UnixSocket | Should -Be (Join-Path $env:KCOPYD_RUNTIME_DIR 'exports')
        stat -c '%F %a %u' $script:Export.UnixSocket | Should -Be 'socket 600 0'
        (Get-MirrorDevice x1).Exports | Should -Be @($script:Export.Uri)
    }

    It 'shows nbdinfo the size and block sizes: the legs'' block size, the region size as preferred' {
        $info = nbdinfo --json $script:Export.Uri | ConvertFrom-Json
        $export = $info.exports[0]
        $export.'export-size' | Should -Be 16MB
        $export.'block_size_minimum' | Should -Be 512
        $export.'block_size_preferred' | Should -Be 256KB
        $export.'can_flush' | Should -BeTrue
    }

    It 'takes random data from nbdcopy and gives the same back, and every leg holds it' {
        $folder = Split-Path (New-TestImage -Name 'x1-marker' -Size 0)
        $data = Join-Path $folder 'x1-data.bin'
        $back = Join-Path $folder 'x1-back.bin'
        Write-RandomRegion -Path (New-TestImage -Name 'x1-data.bin' -Size 16MB) -Offset 0 -Length 16MB -Seed 1201
        nbdcopy --requests=16 $data $script:Export.Uri
        $LASTEXITCODE | Should -Be 0
        nbdcopy $script:Export.Uri $back
        $LASTEXITCODE | Should -Be 0
        $expected = Get-TestSha256 $data 0 16MB
        Get-TestSha256 $back 0 16MB | Should -Be $expected
        foreach ($leg in $script:Legs) { Get-TestSha256 $leg 0 16MB | Should -Be $expected -Because "$leg is a leg" }
        (Get-MirrorDevice x1).State | Should -Be 'InSync'
    }

    It 'refuses a socket in a directory others may write to, and an address that exists, before serving anything' {
        { Publish-MirrorDevice x1 -UnixSocket '/tmp/x1-elsewhere.sock' -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidExportAddress*'
        { Publish-MirrorDevice x1 -UnixSocket $script:Export.UnixSocket -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'ExportAddressInUse*'
        @((Get-MirrorDevice x1).Exports).Count | Should -Be 1
    }

    It 'refuses Remove-MirrorDevice while an NBD client is connected' {
        # A client of its own: the fixed newstyle handshake by hand (NBD_OPT_EXPORT_NAME), then a marker, then it idles.
        $marker = Join-Path (Split-Path (New-TestImage -Name 'x1-client-marker' -Size 0)) 'connected'
        $python = @'
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
def take(n):
    b = b''
    while len(b) < n: b += s.recv(n - len(b))
    return b
take(18)
s.sendall(struct.pack('>I', 3) + struct.pack('>QII', 0x49484156454F5054, 1, 0))
take(10)
open(sys.argv[2], 'w').close()
time.sleep(30)
'@
        $start = [Diagnostics.ProcessStartInfo]::new('python3')
        foreach ($arg in '-c', $python, $script:Export.UnixSocket, $marker) { $start.ArgumentList.Add($arg) }
        $client = [Diagnostics.Process]::Start($start)
        try {
            $deadline = [DateTime]::UtcNow.AddSeconds(20)
            while (-not (Test-Path $marker) -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
            Test-Path $marker | Should -BeTrue -Because 'the client finished its handshake'
            $err = { Remove-MirrorDevice x1 -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'ExportInUse*' -PassThru
            $err.Exception.Message | Should -Match '1 NBD client'
            @(Get-MirrorDevice x1).Count | Should -Be 1
        } finally {
            if (-not $client.HasExited) { $client.Kill() }
            $client.WaitForExit()
        }
    }
}

Describe 'Publish-MirrorDevice -BlockDevice' {
    It 'gives a block device that mkfs, mount and fsck use while the mirror recovers, refused to Unpublish while mounted; the legs end identical' {
        $legs = @(New-TestLoopDevice -Name 'x2-a.img' -Size 32MB; New-TestLoopDevice -Name 'x2-b.img' -Size 32MB)
        Write-RandomRegion -Path $legs[1] -Offset 0 -Length 32MB -Seed 1202   # the recovery overwrites it
        New-MirrorDevice x2 $legs -RecoveryBytesPerSecond 4MB -Force -Confirm:$false | Out-Null
        $mount = Join-Path (Split-Path (New-TestImage -Name 'x2-marker' -Size 0)) 'x2-mnt'
        New-Item -ItemType Directory $mount | Out-Null
        $mounted = $false
        try {
            $export = Publish-MirrorDevice x2 -BlockDevice -Confirm:$false
            $export.BlockDevice | Should -Match '^/dev/loop\d+$'
            (Get-MirrorDevice x2).State | Should -Be 'Recovering'
            mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 $export.BlockDevice
            $LASTEXITCODE | Should -Be 0
            mount $export.BlockDevice $mount
            $LASTEXITCODE | Should -Be 0
            $mounted = $true
            foreach ($i in 1..20) { Write-RandomRegion -Path (New-Item -ItemType File (Join-Path $mount "f$i")).FullName -Offset 0 -Length 256KB -Seed $i }
            $hashes = foreach ($i in 1..20) { (Get-FileHash (Join-Path $mount "f$i")).Hash }

            { Unpublish-MirrorDevice x2 -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'ExportInUse*'
            { Remove-MirrorDevice x2 -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'ExportInUse*'

            umount $mount
            $mounted = $false
            fsck.ext4 -fn $export.BlockDevice | Out-Null
            $LASTEXITCODE | Should -Be 0 -Because 'the filesystem written through the mirror while it recovered checks clean'
            Set-MirrorDevice x2 -RecoveryBytesPerSecond 0 -Confirm:$false
            (Wait-MirrorDevice x2 -TimeoutSeconds 120).State | Should -Be 'InSync'
            mount -o ro $export.BlockDevice $mount
            $mounted = $true
            (1..20 | ForEach-Object { (Get-FileHash (Join-Path $mount "f$_")).Hash }) | Should -Be $hashes
            umount $mount
            $mounted = $false

            Unpublish-MirrorDevice x2 -Confirm:$false
            (Get-LoopBacking).Device | Should -Not -Contain $export.BlockDevice
            Get-TestSha256 $legs[1] 0 32MB | Should -Be (Get-TestSha256 $legs[0] 0 32MB)
        } finally {
            if ($mounted) { umount $mount }
            Remove-MirrorDevice x2 -Force -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'Publish-MirrorDevice -Listen' {
    It 'serves on loopback TCP, and warns when the address reaches beyond this machine' {
        $legs = @(New-TestLoopDevice -Name 'x3-a.img' -Size 8MB; New-TestLoopDevice -Name 'x3-b.img' -Size 8MB)
        New-MirrorDevice x3 $legs -NoSync -Confirm:$false | Out-Null
        try {
            $port = Get-FreePort
            $export = Publish-MirrorDevice x3 -Listen "127.0.0.1:$port" -Confirm:$false -WarningVariable quiet -WarningAction SilentlyContinue
            $export.Uri | Should -Be "nbd://127.0.0.1:$port/"
            $quiet | Should -BeNullOrEmpty
            (nbdinfo --size $export.Uri) | Should -Be 8MB
            $wide = Publish-MirrorDevice x3 -Listen "0.0.0.0:$(Get-FreePort)" -Confirm:$false -WarningVariable warned -WarningAction SilentlyContinue
            ($warned -join ' ') | Should -Match 'without TLS'
            @((Get-MirrorDevice x3).Exports).Count | Should -Be 2
            Unpublish-MirrorDevice x3 -Confirm:$false
            @((Get-MirrorDevice x3).Exports).Count | Should -Be 0
        } finally {
            Remove-MirrorDevice x3 -Force -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'NBD URIs as copy endpoints' {
    It 'copies into an nbdkit export and back out of it, byte for byte' {
        $data = New-TestLoopDevice -Name 'x4-data.img' -Size 16MB
        Write-RandomRegion -Path $data -Offset 0 -Length 16MB -Seed 1204
        $target = New-TestLoopDevice -Name 'x4-target.img' -Size 16MB
        $socket = Join-Path (Split-Path (New-TestImage -Name 'x4-marker' -Size 0)) 'x4.sock'
        $nbdkit = [Diagnostics.Process]::Start('nbdkit', @('--exit-with-parent', '-f', '-U', $socket, 'memory', '16M'))
        try {
            $deadline = [DateTime]::UtcNow.AddSeconds(20)
            while (-not (Test-Path $socket) -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }
            $uri = "nbd+unix:///?socket=$socket"
            (Start-RegionCopy -Source $data -Destination $uri -Wait -Confirm:$false).State | Should -Be 'Completed'
            (Start-RegionCopy -Source $uri -Destination $target -Wait -Confirm:$false).State | Should -Be 'Completed'
            Get-TestSha256 $target 0 16MB | Should -Be (Get-TestSha256 $data 0 16MB)
        } finally {
            if (-not $nbdkit.HasExited) { $nbdkit.Kill() }
            $nbdkit.WaitForExit()
        }
    }

    It 'fails the job with a read error when the server answers EIO, as a local device would' {
        $target = New-TestLoopDevice -Name 'x5-target.img' -Size 4MB
        $socket = Join-Path (Split-Path (New-TestImage -Name 'x5-marker' -Size 0)) 'x5.sock'
        $nbdkit = [Diagnostics.Process]::Start('nbdkit', @('--exit-with-parent', '-f', '-U', $socket, '--filter=error', 'memory', '4M', 'error-pread=EIO', 'error-pread-rate=100%'))
        try {
            $deadline = [DateTime]::UtcNow.AddSeconds(20)
            while (-not (Test-Path $socket) -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }
            $job = Start-RegionCopy -Source "nbd+unix:///?socket=$socket" -Destination $target -Wait -Confirm:$false -ErrorVariable failed -ErrorAction SilentlyContinue
            $job.State | Should -Be 'Failed'
            $job.ReadError | Should -BeTrue
            $failed[0].FullyQualifiedErrorId | Should -BeLike 'CopyReadFailed,*'
        } finally {
            if (-not $nbdkit.HasExited) { $nbdkit.Kill() }
            $nbdkit.WaitForExit()
        }
    }
}

Describe 'fio through the block device of a published mirror' {
    It 'passes --verify=crc32c random writes at queue depth 16, also while the second leg fails its writes' {
        $good = New-TestLoopDevice -Name 'x6-good.img' -Size 32MB
        $failing = New-FailingDisk 'x6-failing' -Size '32M'
        New-MirrorDevice x6 $good, $failing.Device -NoSync -Force -Confirm:$false | Out-Null
        try {
            $export = Publish-MirrorDevice x6 -BlockDevice -Confirm:$false
            $fio = @('--name=verify', "--filename=$($export.BlockDevice)", '--rw=randwrite', '--bs=64k', '--iodepth=16',
                '--ioengine=libaio', '--direct=1', '--size=24M', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0',
                '--output-format=terse')
            fio @fio | Out-Null
            $LASTEXITCODE | Should -Be 0 -Because 'every block fio wrote through the mirror reads back as written'

            # The second leg fails its writes from now on: the mirror goes on from the first, and so does fio.
            New-Item -ItemType File $failing.FailWrites | Out-Null
            fio @fio '--randseed=7' | Out-Null
            $LASTEXITCODE | Should -Be 0 -Because 'a failing leg must not fail the writes the other leg took'
            $status = Get-MirrorDevice x6
            $status.State | Should -Be 'Degraded'
            ($status.Legs | Where-Object Path -EQ $failing.Device).Health | Should -Be 'Dead'
        } finally {
            Remove-Item $failing.FailWrites -ErrorAction Ignore
            Remove-MirrorDevice x6 -Force -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'A live move, as pvmove does it' {
    It 'moves a mounted filesystem onto a new device under fio: Add-MirrorLeg, wait, Remove-MirrorLeg the old one; fio verifies, fsck is clean, the new device holds it alone' {
        $old = New-TestLoopDevice -Name 'x7-old.img' -Size 48MB
        $other = New-TestLoopDevice -Name 'x7-other.img' -Size 48MB
        $new = New-TestLoopDevice -Name 'x7-new.img' -Size 48MB
        New-MirrorDevice x7 $old, $other -Confirm:$false | Out-Null
        (Wait-MirrorDevice x7 -TimeoutSeconds 60).State | Should -Be 'InSync'
        $mount = Join-Path (Split-Path (New-TestImage -Name 'x7-marker' -Size 0)) 'x7-mnt'
        New-Item -ItemType Directory $mount | Out-Null
        $mounted = $false
        $fio = $null
        try {
            $export = Publish-MirrorDevice x7 -BlockDevice -Confirm:$false
            mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 $export.BlockDevice
            mount $export.BlockDevice $mount
            $mounted = $true
            $start = [Diagnostics.ProcessStartInfo]::new('fio')
            foreach ($arg in '--name=move', "--filename=$mount/fio.dat", '--size=16M', '--rw=randwrite', '--bs=4k', '--iodepth=8',
                '--ioengine=libaio', '--direct=1', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', '--loops=6', '--output-format=terse') {
                $start.ArgumentList.Add($arg)
            }
            $start.RedirectStandardOutput = $true
            $fio = [Diagnostics.Process]::Start($start)

            # The move, while fio writes through the mirror.
            Add-MirrorLeg x7 $new -Confirm:$false | Out-Null
            (Wait-MirrorDevice x7 -TimeoutSeconds 120).State | Should -Be 'InSync'
            Remove-MirrorLeg x7 $old -Confirm:$false -WarningVariable split -WarningAction SilentlyContinue | Out-Null
            $split | Should -BeNullOrEmpty -Because 'the old leg left alive and in sync'
            (Get-MirrorDevice x7).Legs.Path | Should -Be @($other, $new)

            $fio.WaitForExit(180000) | Should -BeTrue -Because 'fio ends'
            $fio.ExitCode | Should -Be 0 -Because 'every block fio wrote during the move reads back as written'
            umount $mount
            $mounted = $false
            fsck.ext4 -fn $export.BlockDevice | Out-Null
            $LASTEXITCODE | Should -Be 0
            Unpublish-MirrorDevice x7 -Confirm:$false
            Remove-MirrorDevice x7 -Confirm:$false
            # The new device alone holds the filesystem now.
            fsck.ext4 -fn $new | Out-Null
            $LASTEXITCODE | Should -Be 0 -Because 'the new device holds a clean filesystem by itself'
        } finally {
            if ($fio -and -not $fio.HasExited) { $fio.Kill() }
            if ($mounted) { umount $mount }
            Remove-MirrorDevice x7 -Force -Confirm:$false -ErrorAction Ignore
        }
    }
}
