BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null

    # The loop devices whose backing file is an attachment's FUSE file in this host's runtime directory.
    function Get-AttachedExportLoop {
        $exports = Join-Path $env:KCOPYD_RUNTIME_DIR 'exports'
        @(Get-LoopBacking | Where-Object BackingFile -like "$exports/*.fuse/*" | ForEach-Object Device)
    }
}

AfterAll {
    Remove-TestLoopDevices   # stops the file's host first: its exports end, its mirrors close
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Exports of a host that stops and starts again' {
    It 'are served again where they were published; Unpublish-MirrorDevice forgets them' {
        $legs = @(New-TestLoopDevice -Name 'r1-a.img' -Size 16MB; New-TestLoopDevice -Name 'r1-b.img' -Size 16MB)
        $log = Join-Path (Split-Path (New-TestImage -Name 'r1-marker' -Size 0)) 'r1.log'
        New-MirrorDevice r1 $legs -LogPath $log -Confirm:$false | Out-Null
        try {
            (Wait-MirrorDevice r1 -TimeoutSeconds 60).State | Should -Be 'InSync'
            $unix = Publish-MirrorDevice r1 -Confirm:$false
            $tcp = Publish-MirrorDevice r1 -Listen "127.0.0.1:$(Get-FreePort)" -Confirm:$false
            $data = New-TestImage -Name 'r1-data.bin' -Size 16MB
            Write-RandomRegion -Path $data -Offset 0 -Length 16MB -Seed 1301
            nbdcopy $data $unix.Uri
            $LASTEXITCODE | Should -Be 0

            Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30
            Test-Path $unix.UnixSocket | Should -BeFalse -Because 'a host that stops removes its sockets'

            (Get-MirrorDevice r1).Exports | Sort-Object | Should -Be (@($unix.Uri, $tcp.Uri) | Sort-Object)
            Update-TestHost | Out-Null
            stat -c '%F %a' $unix.UnixSocket | Should -Be 'socket 600'
            foreach ($uri in $unix.Uri, $tcp.Uri) {
                $back = Join-Path (Split-Path $data) "r1-back-$([guid]::NewGuid().ToString('n').Substring(0, 6)).bin"
                nbdcopy $uri $back
                $LASTEXITCODE | Should -Be 0
                Get-TestSha256 $back 0 16MB | Should -Be (Get-TestSha256 $data 0 16MB) -Because "$uri serves the mirror's bytes"
            }
            (Get-KcopydHost -WarningVariable warnings).ExportProblems | Should -BeNullOrEmpty
            $warnings | Should -BeNullOrEmpty

            Unpublish-MirrorDevice r1 -PassThru -Confirm:$false | Should -HaveCount 2
            Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30
            (Get-MirrorDevice r1).Exports | Should -BeNullOrEmpty -Because 'Unpublish-MirrorDevice is not undone by a restart'
            Update-TestHost | Out-Null
        } finally {
            Remove-MirrorDevice r1 -Force -Confirm:$false -ErrorAction Ignore
        }
    }

    It 'a publication that cannot be served again is reported and kept; Unpublish-MirrorDevice then forgets it' {
        $legs = @(New-TestLoopDevice -Name 'r2-a.img' -Size 8MB; New-TestLoopDevice -Name 'r2-b.img' -Size 8MB)
        $log = Join-Path (Split-Path (New-TestImage -Name 'r2-marker' -Size 0)) 'r2.log'
        New-MirrorDevice r2 $legs -LogPath $log -Confirm:$false | Out-Null
        $squatter = $null
        try {
            $port = Get-FreePort
            Publish-MirrorDevice r2 -Listen "127.0.0.1:$port" -Confirm:$false | Out-Null
            Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30
            # Another program takes the address while the host is down.
            $squatter = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, $port)
            $squatter.Start()

            (Get-MirrorDevice r2).Exports | Should -BeNullOrEmpty
            Update-TestHost | Out-Null
            $info = Get-KcopydHost -WarningVariable warnings -WarningAction SilentlyContinue
            $info.ExportProblems | Should -HaveCount 1
            $info.ExportProblems[0].Mirror | Should -Be 'r2'
            $info.ExportProblems[0].Address | Should -Be "127.0.0.1:$port"
            "$warnings" | Should -Match "Mirror 'r2' is not served on 127\.0\.0\.1:$port"

            # Still kept: once the address is free, the next start serves it.
            $squatter.Stop(); $squatter = $null
            Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30
            (Get-MirrorDevice r2).Exports | Should -Be @("nbd://127.0.0.1:$port/")
            Update-TestHost | Out-Null
            (Get-KcopydHost).ExportProblems | Should -BeNullOrEmpty

            # And one kept but not served is forgotten by Unpublish, so a start no longer tries it.
            Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30
            $squatter = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, $port)
            $squatter.Start()
            Get-MirrorDevice r2 | Out-Null
            Update-TestHost | Out-Null
            Unpublish-MirrorDevice r2 -PassThru -Confirm:$false | Should -BeNullOrEmpty -Because 'nothing was served'
            (Get-KcopydHost).ExportProblems | Should -BeNullOrEmpty
            $squatter.Stop(); $squatter = $null
            Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30
            (Get-MirrorDevice r2).Exports | Should -BeNullOrEmpty
            Update-TestHost | Out-Null
        } finally {
            if ($squatter) { $squatter.Stop() }
            Remove-MirrorDevice r2 -Force -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'A published filesystem when its host is killed mid-write' {
    It 'comes back on a new block device: the stale one is reported while mounted and removed once not; the filesystem checks clean and keeps every synced file' {
        $legs = @(New-TestLoopDevice -Name 'r3-a.img' -Size 64MB; New-TestLoopDevice -Name 'r3-b.img' -Size 64MB)
        $folder = Split-Path (New-TestImage -Name 'r3-marker' -Size 0)
        New-MirrorDevice r3 $legs -LogPath (Join-Path $folder 'r3.log') -Confirm:$false | Out-Null
        $mount = Join-Path $folder 'r3-mnt'
        New-Item -ItemType Directory $mount | Out-Null
        $mounted = $false
        $writer = $null
        try {
            (Wait-MirrorDevice r3 -TimeoutSeconds 60).State | Should -Be 'InSync'
            $old = (Publish-MirrorDevice r3 -BlockDevice -Confirm:$false).BlockDevice
            mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 $old
            $LASTEXITCODE | Should -Be 0
            mount $old $mount
            $LASTEXITCODE | Should -Be 0
            $mounted = $true
            foreach ($i in 1..16) { Write-RandomRegion -Path (New-Item -ItemType File (Join-Path $mount "f$i")).FullName -Offset 0 -Length 512KB -Seed (1310 + $i) }
            sync -f $mount
            $LASTEXITCODE | Should -Be 0 -Because 'the files are acknowledged as on disk from here on'
            $hashes = foreach ($i in 1..16) { (Get-FileHash (Join-Path $mount "f$i")).Hash }

            # Writes keep going through the filesystem when the host dies.
            $script = Join-Path $folder 'r3-writer.sh'
            Set-Content $script "n=0; while dd if=/dev/urandom of='$mount/busy' bs=1M count=8 conv=fsync status=none; do n=`$((n+1)); echo `$n > '$folder/r3-passes'; done; exit 3"
            $writer = Start-Process bash -PassThru -ArgumentList $script
            $deadline = [DateTime]::UtcNow.AddSeconds(20)
            while (-not (Test-Path "$folder/r3-passes") -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 100 }
            Test-Path "$folder/r3-passes" | Should -BeTrue -Because 'the writer is writing through the filesystem'
            $killed = (Get-KcopydHost).ProcessId
            Stop-Process -Id $killed -Force
            # The filesystem is left on a device whose I/O now fails, as over a kernel nbd device whose server died.
            $writer.WaitForExit(30000) | Should -BeTrue -Because 'the writer meets I/O errors instead of hanging'
            $writer.ExitCode | Should -Be 3 -Because 'it was writing when the host died, and its write failed'

            # The next cmdlet starts a host: the mirror is assembled, served again and attached to a new device.
            Get-MirrorDevice r3 | Out-Null
            Update-TestHost | Should -Not -Be $killed
            $info = Get-KcopydHost -WarningVariable warnings -WarningAction SilentlyContinue
            $info.ExportProblems | Should -HaveCount 1
            $info.ExportProblems[0].Address | Should -Be $old
            "$warnings" | Should -Match "still mounted"
            $new = @(Get-AttachedExportLoop | Where-Object { $_ -ne $old })
            $new | Should -HaveCount 1
            (Get-LoopBacking).Device | Should -Contain $old -Because 'a mounted device is not taken from its user'

            timeout 30 umount $mount
            $LASTEXITCODE | Should -Be 0
            $mounted = $false
            # One more restart finds the stale device free: it is detached, and nothing is reported any more.
            Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30
            Get-MirrorDevice r3 | Out-Null
            Update-TestHost | Out-Null
            (Get-KcopydHost).ExportProblems | Should -BeNullOrEmpty
            $attached = @(Get-AttachedExportLoop)
            $attached | Should -HaveCount 1 -Because 'the stale device is gone and the export has one block device'
            @(Get-ChildItem (Join-Path $env:KCOPYD_RUNTIME_DIR 'exports') -Directory).Count | Should -Be 1 -Because 'the stale folder is removed'

            # The journal replays; every synced file is there, byte for byte, and fsck finds nothing.
            mount $attached[0] $mount
            $LASTEXITCODE | Should -Be 0
            $mounted = $true
            (1..16 | ForEach-Object { (Get-FileHash (Join-Path $mount "f$_")).Hash }) | Should -Be $hashes
            umount $mount
            $mounted = $false
            fsck.ext4 -fn $attached[0] | Out-Null
            $LASTEXITCODE | Should -Be 0 -Because 'the filesystem checks clean after the kill'
            (Wait-MirrorDevice r3 -TimeoutSeconds 120).State | Should -Be 'InSync'
            Unpublish-MirrorDevice r3 -Confirm:$false | Out-Null
            Get-TestSha256 $legs[1] 0 64MB | Should -Be (Get-TestSha256 $legs[0] 0 64MB)
        } finally {
            if ($writer -and -not $writer.HasExited) { $writer.Kill($true) }
            if ($mounted) { timeout 30 umount $mount; if ($LASTEXITCODE) { umount -l $mount } }
            Remove-MirrorDevice r3 -Force -Confirm:$false -ErrorAction Ignore
        }
    }
}
