BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null

    # Flips every byte of a range, so it differs whatever it held.
    function Set-Planted([string] $Path, [long] $Offset, [long] $Length = 1) {
        $stream = [IO.File]::Open($Path, 'Open', 'ReadWrite', 'ReadWrite')
        try {
            $bytes = [byte[]]::new($Length)
            $stream.Position = $Offset; $stream.ReadExactly($bytes)
            for ($i = 0; $i -lt $Length; $i++) { $bytes[$i] = $bytes[$i] -bxor 0xFF }
            $stream.Position = $Offset; $stream.Write($bytes, 0, $Length); $stream.Flush($true)
        } finally { $stream.Dispose() }
    }

    # nbdcopy --blkhash's construction written out plainly: SHA-256 of the block digests and the length.
    function Get-ReferenceBlockHash([string] $Path, [long] $Offset, [long] $Length, [int] $BlockSize = 64KB) {
        $stream = [IO.File]::Open($Path, 'Open', 'Read', 'ReadWrite')
        $all = [Security.Cryptography.IncrementalHash]::CreateHash('SHA256')
        try {
            $stream.Position = $Offset
            for ($at = 0L; $at -lt $Length; $at += $BlockSize) {
                $block = [byte[]]::new([Math]::Min($BlockSize, $Length - $at))
                $stream.ReadExactly($block)
                $all.AppendData([Security.Cryptography.SHA256]::HashData($block))
            }
            $all.AppendData([BitConverter]::GetBytes([long]$Length))
            [Convert]::ToHexString($all.GetHashAndReset())
        } finally { $stream.Dispose(); $all.Dispose() }
    }

    $script:Source = New-TestLoopDevice -Name 'source.img' -Size 32MB
    Write-RandomRegion -Path $Source -Offset 0 -Length 32MB -Seed 1401
}

AfterAll {
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Compare-Region' {
    It 'finds nothing after a copy, and -Quiet says $true' {
        $copy = New-TestLoopDevice -Name 'c1.img' -Size 32MB
        (Start-RegionCopy $Source $copy -Wait -Confirm:$false).State | Should -Be 'Completed'
        Compare-Region $Source $copy | Should -BeNullOrEmpty
        Compare-Region $Source $copy -Quiet | Should -BeExactly $true
    }

    It 'finds the first byte, the last byte and one sector exactly, naming the input that differs' {
        $copy = New-TestLoopDevice -Name 'c2.img' -Size 32MB
        Start-RegionCopy $Source $copy -Wait -Confirm:$false | Out-Null
        Set-Planted $copy 0
        Set-Planted $copy (32MB - 1)
        Set-Planted $copy (7MB + 1536) 512
        $found = @(Compare-Region -Path $Source, $copy)
        $found.Count | Should -Be 3
        $found.ForEach('Offset') | Should -Be @(0, (7MB + 1536), (32MB - 512))
        $found.ForEach('Length') | Should -Be @(512, 512, 512)
        foreach ($range in $found) { $range.Inputs | Should -Be @($copy) }
        $found[0].GetType().FullName | Should -Be 'Kcopyd.Protocol.RegionDifferenceInfo'
        Compare-Region $Source $copy -Quiet | Should -BeExactly $false
    }

    It 'merges adjacent blocks and outputs more ranges than the host returns in one call, each exact' {
        $a = New-TestImage -Name 'm-a.img' -Size 8MB
        $b = New-TestImage -Name 'm-b.img' -Size 8MB
        Write-RandomRegion -Path $a -Offset 0 -Length 8MB -Seed 1402
        Write-RandomRegion -Path $b -Offset 0 -Length 8MB -Seed 1402
        # Every other sector of the first 5000000 bytes: 4883 ranges, past the 4096 the host returns per call.
        # Zeros differ from random sectors (512 random bytes are never all zero).
        $bytes = [IO.File]::ReadAllBytes($b)
        for ($s = 0; $s -lt 9766; $s += 2) { [Array]::Clear($bytes, $s * 512, 512) }
        [Array]::Clear($bytes, 6MB, 1MB) # one range of 1 MiB
        [IO.File]::WriteAllBytes($b, $bytes)
        $found = @(Compare-Region $a $b)
        $found.Count | Should -Be 4884
        for ($k = 0; $k -lt 4883; $k++) {
            if ($found[$k].Offset -ne $k * 1024 -or $found[$k].Length -ne 512) { throw "range $k is $($found[$k]), not $($k * 1024)+512" }
        }
        $found[4883].Offset | Should -Be 6MB
        $found[4883].Length | Should -Be 1MB
    }

    It 'compares three image files at their own offsets and names only the one that differs' {
        $a = New-TestImage -Name 't-a.img' -Size 8MB
        $b = New-TestImage -Name 't-b.img' -Size 8MB
        $c = New-TestImage -Name 't-c.img' -Size 12MB
        Write-RandomRegion -Path $a -Offset 0 -Length 4MB -Seed 1403
        Write-RandomRegion -Path $b -Offset 1MB -Length 4MB -Seed 1403
        Write-RandomRegion -Path $c -Offset 8MB -Length 4MB -Seed 1403
        Compare-Region $a $b $c -Offset 0, 1MB, 8MB -Length 4MB | Should -BeNullOrEmpty
        Set-Planted $c (8MB + 3MB + 100)
        $found = @(Compare-Region $a $b $c -Offset 0, 1MB, 8MB -Length 4MB)
        $found.Count | Should -Be 1
        $found[0].Inputs | Should -Be @($c)
        $found[0].Offset | Should -Be (3MB)
        $found[0].RegionOffset | Should -Be (3MB)
        $found[0].Length | Should -Be 512
    }

    It 'compares inputs of other sizes over their common part and warns' {
        $small = New-TestImage -Name 's-small.img' -Size 4MB
        $big = New-TestImage -Name 's-big.img' -Size 8MB
        Compare-Region $small $big -WarningVariable warned -WarningAction SilentlyContinue | Should -BeNullOrEmpty
        "$warned" | Should -BeLike '*only the first 4194304 bytes*'
    }

    It 'compares a mirror, by name and by object, with a loop device, and reads the legs of the live mirror' {
        $legs = 1..2 | ForEach-Object { New-TestLoopDevice -Name "leg$_.img" -Size 32MB }
        $copy = New-TestLoopDevice -Name 'leg-copy.img' -Size 32MB
        $mirror = New-MirrorDevice cmp1 -Leg $legs -NoSync -Confirm:$false
        try {
            Start-RegionCopy $Source $mirror, $copy -Wait -Confirm:$false | Out-Null
            Compare-Region cmp1 $Source | Should -BeNullOrEmpty
            Compare-Region $mirror $legs[0] $legs[1] | Should -BeNullOrEmpty
            Set-Planted $copy (20MB + 4096) 4096
            $found = @(Compare-Region $mirror $Source $copy)
            $found.Count | Should -Be 1
            $found[0].Inputs | Should -Be @($copy)
            $found[0].Offset | Should -Be (20MB + 4096)
            $found[0].Length | Should -Be 4096
        } finally {
            Remove-MirrorDevice cmp1 -Confirm:$false
        }
    }

    It 'compares an NBD export served over a Unix socket with a loop device' {
        $socket = Join-Path (Split-Path (New-TestImage -Name 'n-marker' -Size 0)) 'cmp.sock'
        $nbdkit = [Diagnostics.Process]::Start('nbdkit', @('--exit-with-parent', '-f', '-U', $socket, 'memory', '32M'))
        try {
            $deadline = [DateTime]::UtcNow.AddSeconds(20)
            while (-not (Test-Path $socket) -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }
            $uri = "nbd+unix:///?socket=$socket"
            Start-RegionCopy $Source $uri -Wait -Confirm:$false | Out-Null
            Compare-Region $uri $Source | Should -BeNullOrEmpty
            (Kcopyd\Get-RegionHash $uri).Hash | Should -Be (Kcopyd\Get-RegionHash $Source).Hash
            $copy = New-TestLoopDevice -Name 'n-copy.img' -Size 32MB
            Start-RegionCopy $Source $copy -Wait -Confirm:$false | Out-Null
            Set-Planted $copy (31MB)
            $found = @(Compare-Region $uri $copy)
            $found.Count | Should -Be 1
            $found[0].Offset | Should -Be (31MB)
        } finally {
            if (-not $nbdkit.HasExited) { $nbdkit.Kill() }
            $nbdkit.WaitForExit()
        }
    }

    It 'refuses a region past an end, an unaligned one and a wrong count of offsets, by ErrorId' {
        $other = New-TestImage -Name 'e-other.img' -Size 32MB
        { Compare-Region $Source $other -Offset 1MB -Length 32MB } | Should -Throw -ErrorId 'RegionOutOfRange,Kcopyd.Commands.CompareRegionCommand'
        { Compare-Region $Source $other -Offset 100 -Length 1MB } | Should -Throw -ErrorId 'UnalignedRegion,Kcopyd.Commands.CompareRegionCommand'
        { Compare-Region $Source $other -Length 1000 } | Should -Throw -ErrorId 'UnalignedRegion,Kcopyd.Commands.CompareRegionCommand'
        { Compare-Region $Source $other -Offset 0, 0, 0 } | Should -Throw -ErrorId 'OffsetCount,Kcopyd.Commands.CompareRegionCommand'
        { Compare-Region $Source '/nonexistent/kcopyd.img' } | Should -Throw -ErrorId 'DeviceNotFound,Kcopyd.Commands.CompareRegionCommand'
    }
}

Describe 'Ctrl+C during Compare-Region' {
    It 'gives the shell back within seconds, and the host compares again at once' {
        $slow = New-TestNbdLoopDevice -Name 'slow' -Nbdkit '--filter=delay', 'memory', '32M', 'rdelay=1000ms'
        $shell = $null
        try {
            $state = [Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
            $state.ImportPSModule("$PSScriptRoot/../../Kcopyd.psd1")
            $shell = [powershell]::Create($state)
            $null = $shell.AddScript("Compare-Region '$Source' '$slow'")
            $async = $shell.BeginInvoke()
            Start-Sleep -Seconds 2
            $async.IsCompleted | Should -BeFalse -Because 'reading 32 MiB at a second per request takes longer'
            $clock = [Diagnostics.Stopwatch]::StartNew()
            $stop = $shell.BeginStop($null, $null)   # what Ctrl+C does
            $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(10)) | Should -BeTrue -Because 'Ctrl+C must give the shell back'
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 5
            $a = New-TestImage -Name 'cc-a.img' -Size 1MB
            Compare-Region $a (New-TestImage -Name 'cc-b.img' -Size 1MB) -Quiet | Should -BeExactly $true
        } finally {
            if ($shell) { $shell.Dispose() }
        }
    }
}

Describe 'Get-RegionHash' {
    It 'gives equal regions on two devices equal hashes, and another hash after one byte changes' {
        $copy = New-TestLoopDevice -Name 'h1.img' -Size 40MB
        Start-RegionCopy $Source $copy -DestinationOffset 8MB -Wait -Confirm:$false | Out-Null
        $expected = Kcopyd\Get-RegionHash $Source
        $expected.Algorithm | Should -Be 'SHA256'
        $expected.Hash | Should -Match '^[0-9A-F]{64}$'
        $expected.Path | Should -Be $Source
        $expected.Offset | Should -Be 0
        $expected.Length | Should -Be 32MB
        $expected.BlockSize | Should -Be 64KB
        (Kcopyd\Get-RegionHash $copy -Offset 8MB -Length 32MB).Hash | Should -Be $expected.Hash
        Set-Planted $copy (8MB + 12345)
        (Kcopyd\Get-RegionHash $copy -Offset 8MB -Length 32MB).Hash | Should -Not -Be $expected.Hash
    }

    It 'is nbdcopy --blkhash''s construction, and a hole hashes as written zeros' {
        $image = New-TestImage -Name 'h2.img' -Size 8MB
        Write-RandomRegion -Path $image -Offset 1MB -Length 3MB -Seed 1404  # the rest stays a hole
        (Kcopyd\Get-RegionHash $image -Length (8MB - 4096)).Hash | Should -Be (Get-ReferenceBlockHash $image 0 (8MB - 4096))
        $zeros = New-TestLoopDevice -Name 'h2-zeros.img' -Size 8MB
        Write-RandomRegion -Path $zeros -Offset 0 -Length 8MB -Seed 1
        Clear-Region $zeros 0 8MB -Wait -Confirm:$false | Out-Null
        (Kcopyd\Get-RegionHash $zeros).Hash | Should -Be (Kcopyd\Get-RegionHash (New-TestImage -Name 'h2-hole.img' -Size 8MB)).Hash
    }

    It 'equals nbdcopy --blkhash where this nbdcopy has it' -Skip:(-not ((nbdcopy --help 2>&1) -match 'blkhash')) {
        $out = Join-Path (Split-Path (New-TestImage -Name 'h3-marker' -Size 0)) 'h3.hash'
        nbdcopy --blkhash --blkhash-file=$out $Source null:
        (Kcopyd\Get-RegionHash $Source).Hash | Should -Be (Get-Content $out).Trim()
    }

    It 'hashes each path piped in, and a file from Get-ChildItem, with the block size and algorithm asked for' {
        $image = New-TestImage -Name 'h4.img' -Size 4MB
        Write-RandomRegion -Path $image -Offset 0 -Length 4MB -Seed 1405
        $hashes = @($Source, $image | Kcopyd\Get-RegionHash -Length 4MB -BlockSize 4KB -Algorithm XxHash128)
        $hashes.Count | Should -Be 2
        $hashes.Path | Should -Be @($Source, $image)
        $hashes.Algorithm | Should -Be @('XxHash128', 'XxHash128')
        $hashes[0].Hash | Should -Match '^[0-9A-F]{32}$'
        (Get-Item $image | Kcopyd\Get-RegionHash -Length 4MB -BlockSize 4KB -Algorithm XxHash128).Hash | Should -Be $hashes[1].Hash
    }

    It 'writes an error for a path it cannot hash and still hashes the others' {
        $image = New-TestImage -Name 'h5.img' -Size 1MB
        $hashes = @(Kcopyd\Get-RegionHash '/nonexistent/kcopyd.img', $image -ErrorVariable failed -ErrorAction SilentlyContinue)
        $hashes.Count | Should -Be 1
        $failed[0].FullyQualifiedErrorId | Should -Be 'DeviceNotFound,Kcopyd.Commands.GetRegionHashCommand'
        { Kcopyd\Get-RegionHash $image -BlockSize 3000 -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidBlockSize,Kcopyd.Commands.GetRegionHashCommand'
        { Kcopyd\Get-RegionHash $image -Offset 4096 -Length 1MB -ErrorAction Stop } | Should -Throw -ErrorId 'RegionOutOfRange,Kcopyd.Commands.GetRegionHashCommand'
    }
}
