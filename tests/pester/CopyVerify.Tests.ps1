# Start-RegionCopy -Verify, -Sparse and -DestinationIsZero on real devices: a disk that silently drops every write
# (nbdkit's null plugin through nbdfuse and a loop device with direct I/O) and sparse image files.
BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Source = New-TestLoopDevice -Name 'source.img' -Size 32MB
    Write-RandomRegion -Path $Source -Offset 0 -Length 32MB -Seed 14
    $script:Good = New-TestLoopDevice -Name 'good.img' -Size 32MB
    # Every write succeeds and is thrown away; every read returns zeros.
    $script:Lying = New-TestNbdLoopDevice -Name 'lying' -Nbdkit 'null', '32M'

    function script:Get-AllocatedBytes([string] $Path) { [long](stat -c '%b' $Path) * 512 }

    # A 64 MiB image that is 90% holes: 1 MiB of data every 10 MiB (7 MiB in all), not aligned to the copy's chunks.
    function script:New-HolesImage([string] $Name) {
        $image = New-TestImage -Name $Name -Size 64MB
        foreach ($k in 0..6) { Write-RandomRegion -Path $image -Offset ($k * 10MB) -Length 1MB -Seed (20 + $k) }
        $image
    }
}

AfterAll {
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Start-RegionCopy -Verify' {
    It 'completes a verified copy to a good device with no mismatches' {
        $job = Start-RegionCopy $Source $Good -Verify -Wait -Confirm:$false

        $job.State | Should -Be 'Completed'
        $job.Verify | Should -BeTrue
        $job.Mismatches | Should -BeNullOrEmpty
        $job.Error | Should -BeNullOrEmpty
        $job.Warnings | Should -BeNullOrEmpty
        $job.BytesCopied | Should -Be 32MB
        Get-TestSha256 $Good 0 32MB | Should -Be (Get-TestSha256 $Source 0 32MB)
    }

    It 'fails a copy to a device that silently drops writes, naming it and the whole range' {
        $job = Start-RegionCopy $Source $Good, $Lying -Verify -Wait -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue

        $job.State | Should -Be 'Failed'
        $job.WriteErrors | Should -BeNullOrEmpty -Because 'every write said it succeeded'
        $job.ReadError | Should -BeFalse
        # Through nbdfuse and the loop driver, a re-read right after its write now and then returns the bytes just
        # written (a read after the copy returns zeros): so not one exact range here, but every range is the lying
        # device's, in whole 2 MiB chunks of the region. The engine's tests pin exact ranges with a write-dropping device.
        $job.Mismatches.Count | Should -BeGreaterOrEqual 1
        foreach ($m in $job.Mismatches) {
            $m.Destination | Should -Be $Lying
            $m.Offset % 2MB | Should -Be 0
            $m.Length % 2MB | Should -Be 0
            $m.Offset + $m.Length | Should -BeLessOrEqual 32MB
            $m.Unreadable | Should -BeFalse
        }
        $job.Error | Should -BeLike "*'$Lying' did not read back as the source*"
        $job.Error | Should -Not -BeLike "*$Good*"
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VerifyMismatch,*'
        $err[0].TargetObject.Id | Should -Be $job.Id
    }

    It 'lets the same copy to that device pass without -Verify: nothing else notices' {
        $job = Start-RegionCopy $Source $Lying -Wait -Confirm:$false
        $job.State | Should -Be 'Completed'
        $job.Mismatches | Should -BeNullOrEmpty
    }
}

Describe 'Start-RegionCopy -Sparse and -DestinationIsZero' {
    It 'copies a 90%-holes image to an image file as identical bytes in about a tenth of the space' {
        $image = New-HolesImage 'holes.img'
        $target = New-TestImage -Name 'sparse-copy.img' -Size 64MB
        Write-RandomRegion -Path $target -Offset 0 -Length 64MB -Seed 30 # old data everywhere: zeroing must free it
        Get-AllocatedBytes $target | Should -BeGreaterOrEqual 64MB

        $job = Start-RegionCopy $image $target -Sparse -Verify -Wait -Confirm:$false

        $job.State | Should -Be 'Completed'
        $job.BytesCopied | Should -Be 7MB
        $job.BytesZeroed | Should -Be 57MB
        $job.BytesSkipped | Should -Be 0
        $job.PercentComplete | Should -Be 100
        Get-TestSha256 $target 0 64MB | Should -Be (Get-TestSha256 $image 0 64MB)
        Get-AllocatedBytes $target | Should -BeGreaterOrEqual 7MB
        Get-AllocatedBytes $target | Should -BeLessOrEqual 8MB
        (du -B1 $target) -split '\s+' | Select-Object -First 1 | Should -BeLessOrEqual 8MB
    }

    It 'leaves the zero parts of a new sparse image unwritten with -DestinationIsZero' {
        $image = New-HolesImage 'holes2.img'
        $target = New-TestImage -Name 'zero-copy.img' -Size 64MB

        $job = Start-RegionCopy $image $target -DestinationIsZero -Wait -Confirm:$false

        $job.State | Should -Be 'Completed'
        $job.BytesCopied | Should -Be 7MB
        $job.BytesSkipped | Should -Be 57MB
        $job.BytesZeroed | Should -Be 0
        Get-TestSha256 $target 0 64MB | Should -Be (Get-TestSha256 $image 0 64MB)
        Get-AllocatedBytes $target | Should -BeLessOrEqual 8MB
    }

    It 'zeroes the zero chunks of a loop device source on a loop device destination' {
        $from = New-TestLoopDevice -Name 'mostly-zero.img' -Size 16MB
        Write-RandomRegion -Path $from -Offset 3MB -Length 64KB -Seed 40
        $to = New-TestLoopDevice -Name 'old-data.img' -Size 16MB
        Write-RandomRegion -Path $to -Offset 0 -Length 16MB -Seed 41

        $job = Start-RegionCopy $from $to -Sparse -Verify -Wait -Confirm:$false

        $job.State | Should -Be 'Completed'
        $job.BytesCopied | Should -Be 64KB
        $job.BytesZeroed | Should -Be (16MB - 64KB)
        Get-TestSha256 $to 0 16MB | Should -Be (Get-TestSha256 $from 0 16MB)
    }
}
