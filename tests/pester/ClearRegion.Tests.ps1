BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Device = New-TestLoopDevice -Name 'clear.img' -Size 64MB

    function Reset-Device {
        # Every test starts from the same random bytes, so "untouched" means equal to this.
        Write-RandomRegion -Path $Device -Offset 0 -Length 64MB -Seed 7
        $script:Original = Get-TestSha256 $Device 0 64MB
    }

    function Get-ZeroHash([long] $Length) {
        [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData([byte[]]::new($Length)))
    }
}

AfterAll {
    Remove-TestLoopDevices   # stops the file's host first: its mirrors close, stacked ones first
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Clear-Region' {
    BeforeEach { Reset-Device }

    It 'zeroes a region of a loop device and leaves the bytes around it untouched' {
        $before = Get-TestSha256 $Device 0 3MB
        $after = Get-TestSha256 $Device 13MB 51MB

        $job = Clear-Region -Path $Device -Offset 3MB -Length 10MB -Wait -Confirm:$false

        $job.State | Should -Be 'Completed'
        $job.Source | Should -BeNullOrEmpty
        $job.Destination | Should -Be @($Device)
        $job.DestinationOffset | Should -Be @(3MB)
        $job.BytesCopied | Should -Be 10MB
        $job.Error | Should -BeNullOrEmpty
        Get-TestSha256 $Device 3MB 10MB | Should -Be (Get-ZeroHash 10MB)
        Get-TestSha256 $Device 0 3MB | Should -Be $before
        Get-TestSha256 $Device 13MB 51MB | Should -Be $after
    }

    It 'zeroes a region that is only block-aligned, to the byte' {
        $job = Clear-Region $Device (1MB + 512) (4KB + 512) -Wait -Confirm:$false
        $job.State | Should -Be 'Completed'
        Get-TestSha256 $Device (1MB + 512) (4KB + 512) | Should -Be (Get-ZeroHash (4KB + 512))
        Get-TestSha256 $Device 0 (1MB + 512) | Should -Not -Be (Get-ZeroHash (1MB + 512))
        Get-TestSha256 $Device (1MB + 5KB) 1MB | Should -Not -Be (Get-ZeroHash 1MB)
    }

    It 'zeroes a region of an image file' {
        $image = New-TestImage -Name 'clear-file.img' -Size 16MB
        Write-RandomRegion -Path $image -Offset 0 -Length 16MB -Seed 8
        $tail = Get-TestSha256 $image 12MB 4MB
        (Clear-Region $image 4MB 8MB -Wait -Confirm:$false).State | Should -Be 'Completed'
        Get-TestSha256 $image 4MB 8MB | Should -Be (Get-ZeroHash 8MB)
        Get-TestSha256 $image 12MB 4MB | Should -Be $tail
    }

    It 'returns a running job at once without -Wait, which Get-CopyJob then shows finished' {
        $job = Clear-Region $Device 0 32MB -Confirm:$false
        $job.Id | Should -BeGreaterThan 0
        (Wait-CopyJob -Id $job.Id -TimeoutSeconds 60).IsFinished | Should -BeTrue
        (Get-CopyJob -Id $job.Id).State | Should -Be 'Completed'
        Get-TestSha256 $Device 0 32MB | Should -Be (Get-ZeroHash 32MB)
    }

    It 'writes nothing under -WhatIf' {
        Clear-Region $Device 0 64MB -Wait -WhatIf | Should -BeNullOrEmpty
        Get-TestSha256 $Device 0 64MB | Should -Be $Original
    }
}

Describe 'Clear-Region with bad input' {
    BeforeAll { Reset-Device }

    It '<Case> fails with <ErrorId> (<Category>) and writes nothing' -ForEach @(
        @{ Case = 'a missing device'; ErrorId = 'DeviceNotFound'; Category = 'ObjectNotFound'; Arguments = @{ Path = '/dev/no-such-device' } }
        @{ Case = 'a region past the end'; ErrorId = 'RegionOutOfRange'; Category = 'InvalidArgument'; Arguments = @{ Offset = 60MB; Length = 8MB } }
        @{ Case = 'an offset off the block size'; ErrorId = 'UnalignedRegion'; Category = 'InvalidArgument'; Arguments = @{ Offset = 100 } }
        @{ Case = 'a length off the block size'; ErrorId = 'UnalignedRegion'; Category = 'InvalidArgument'; Arguments = @{ Length = 1MB + 1 } }
        @{ Case = 'an unknown client'; ErrorId = 'ClientNotFound'; Category = 'ObjectNotFound'; Arguments = @{ Client = 'no-such-client' } }
    ) {
        $parameters = @{ Path = $Device; Offset = 0; Length = 1MB; Wait = $true; Confirm = $false }
        foreach ($key in $Arguments.Keys) { $parameters[$key] = $Arguments[$key] }

        $err = { Clear-Region @parameters -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike "$ErrorId,*"
        $err.CategoryInfo.Category | Should -Be $Category

        Get-TestSha256 $Device 0 64MB | Should -Be $Original
    }

    It 'refuses a mounted device with DeviceInUse, and zeroes it only with -Force' {
        Invoke-WithMountedLoopDevice -Name 'clear-mounted.img' -ReadOnly -ScriptBlock {
            param($disk)
            $before = Get-TestSha256 $disk 0 32MB
            $err = { Clear-Region $disk 16MB 1MB -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
            $err.FullyQualifiedErrorId | Should -BeLike 'DeviceInUse,*'
            $err.CategoryInfo.Category | Should -Be 'ResourceBusy'
            $err.TargetObject | Should -Be $disk
            Get-TestSha256 $disk 0 32MB | Should -Be $before

            # A region the filesystem does not use yet, so zeroing it under the mount harms nothing.
            (Clear-Region $disk 31MB 1MB -Force -Wait -Confirm:$false).State | Should -Be 'Completed'
            Get-TestSha256 $disk 31MB 1MB | Should -Be (Get-ZeroHash 1MB)
        } | Out-Null
    }
}
