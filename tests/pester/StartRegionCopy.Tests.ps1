BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Source = New-TestLoopDevice -Name 'source.img' -Size 64MB
    $script:Targets = 1..3 | ForEach-Object { New-TestLoopDevice -Name "target$_.img" -Size 64MB }
    Write-RandomRegion -Path $Source -Offset 0 -Length 64MB -Seed 42
    $script:Zeros = Get-TestSha256 -Path $Targets[2] -Offset 0 -Length 64MB
}

AfterAll {
    Remove-TestLoopDevices   # stops the file's host first: its mirrors close, stacked ones first
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Start-RegionCopy' {
    It 'copies a random region to two loop devices byte for byte and returns the finished job' {
        $job = Start-RegionCopy -Source $Source -SourceOffset 1MB -Destination $Targets[0], $Targets[1] `
            -DestinationOffset 2MB, 4MB -Length 48MB -Wait -Confirm:$false

        $job.State | Should -Be 'Completed'
        $job.BytesCopied | Should -Be 48MB
        $job.BytesTotal | Should -Be 48MB
        $job.PercentComplete | Should -Be 100
        $job.Source | Should -Be $Source
        $job.Destination | Should -Be @($Targets[0], $Targets[1])
        $job.StartTime | Should -Not -BeNullOrEmpty
        $job.EndTime | Should -BeGreaterOrEqual $job.StartTime
        $job.Error | Should -BeNullOrEmpty
        $expected = Get-TestSha256 $Source 1MB 48MB
        Get-TestSha256 $Targets[0] 2MB 48MB | Should -Be $expected
        Get-TestSha256 $Targets[1] 4MB 48MB | Should -Be $expected
    }

    It 'copies the rest of the source when no length is given' {
        $job = Start-RegionCopy $Source $Targets[0] -Wait -Confirm:$false
        $job.BytesCopied | Should -Be 64MB
        Get-TestSha256 $Targets[0] 0 64MB | Should -Be (Get-TestSha256 $Source 0 64MB)
    }

    It 'returns a running job at once without -Wait, which Get-CopyJob then shows finished' {
        $job = Start-RegionCopy $Source $Targets[1] -Length 32MB -Confirm:$false
        $job.Id | Should -BeGreaterThan 0
        (Wait-CopyJob -Id $job.Id -TimeoutSeconds 60).IsFinished | Should -BeTrue
        $seen = Get-CopyJob -Id $job.Id
        $seen.State | Should -Be 'Completed'
        $seen.BytesCopied | Should -Be 32MB
    }

    It 'writes nothing under -WhatIf' {
        Start-RegionCopy $Source $Targets[2] -WhatIf | Should -BeNullOrEmpty
        Get-TestSha256 $Targets[2] 0 64MB | Should -Be $Zeros
    }

    # -Confirm:$false lets the host start a job without asking the cmdlet back; what ShouldProcess would still say
    # or refuse must not be lost by that.
    It 'writes nothing with -Confirm:$false under $WhatIfPreference' {
        $WhatIfPreference = $true
        try { Start-RegionCopy $Source $Targets[2] -Confirm:$false | Should -BeNullOrEmpty }
        finally { $WhatIfPreference = $false }
        Get-TestSha256 $Targets[2] 0 64MB | Should -Be $Zeros
    }

    It 'still says what it performs under -Verbose with -Confirm:$false' {
        $lines = Start-RegionCopy $Source $Targets[1] -Length 1MB -Wait -Confirm:$false -Verbose 4>&1
        @($lines | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] -and $_.Message -like '*Overwrite with 1048576 bytes copied*' }).Count | Should -Be 1
        @($lines | Where-Object { $_ -is [Kcopyd.Protocol.CopyJobInfo] })[0].State | Should -Be 'Completed'
    }
}

Describe 'Start-RegionCopy with bad input' {
    It '<Case> fails with <ErrorId> (<Category>) and writes nothing' -ForEach @(
        @{ Case = 'a missing source'; ErrorId = 'DeviceNotFound'; Category = 'ObjectNotFound'; Arguments = @{ Source = '/dev/no-such-device' } }
        @{ Case = 'a region past the end'; ErrorId = 'RegionOutOfRange'; Category = 'InvalidArgument'; Arguments = @{ SourceOffset = 32MB; Length = 48MB } }
        @{ Case = 'a destination region past the end'; ErrorId = 'RegionOutOfRange'; Category = 'InvalidArgument'; Arguments = @{ DestinationOffset = 63MB; Length = 2MB } }
        @{ Case = 'an offset off the block size'; ErrorId = 'UnalignedRegion'; Category = 'InvalidArgument'; Arguments = @{ SourceOffset = 100; Length = 1MB } }
        @{ Case = 'a length off the block size'; ErrorId = 'UnalignedRegion'; Category = 'InvalidArgument'; Arguments = @{ Length = 1MB + 1 } }
        @{ Case = 'a destination overlapping the source'; ErrorId = 'OverlappingRegion'; Category = 'InvalidArgument'; Arguments = @{ DestinationIsSource = $true; DestinationOffset = 1MB; Length = 4MB } }
        @{ Case = 'a wrong number of offsets'; ErrorId = 'DestinationOffsetCount'; Category = 'InvalidArgument'; Arguments = @{ DestinationOffset = 0, 1MB } }
    ) {
        $parameters = @{ Source = $Source; Destination = $Targets[2]; Confirm = $false; Wait = $true }
        foreach ($key in $Arguments.Keys) { $parameters[$key] = $Arguments[$key] }
        if ($parameters.ContainsKey('DestinationIsSource')) {
            $parameters.Remove('DestinationIsSource')
            $parameters.Destination = $Source
        }
        $before = Get-TestSha256 $Source 0 64MB

        $err = { Start-RegionCopy @parameters -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike "$ErrorId,*"
        $err.CategoryInfo.Category | Should -Be $Category

        Get-TestSha256 $Targets[2] 0 64MB | Should -Be $Zeros
        Get-TestSha256 $Source 0 64MB | Should -Be $before
    }

    It 'refuses a mounted destination, and writes to it only with -Force' {
        $disk = Invoke-WithMountedLoopDevice -Name 'mounted.img' -ReadOnly -ScriptBlock {
            param($disk)
            $before = Get-TestSha256 $disk 0 32MB
            $err = { Start-RegionCopy $Source $disk -Length 1MB -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
            $err.FullyQualifiedErrorId | Should -BeLike 'DeviceInUse,*'
            $err.CategoryInfo.Category | Should -Be 'ResourceBusy'
            $err.TargetObject | Should -Be $disk
            Get-TestSha256 $disk 0 32MB | Should -Be $before
        }
        # Unmounted, the same copy goes through; -Force is what allows a device that is still claimed.
        (Start-RegionCopy $Source $disk -Length 1MB -Wait -Confirm:$false).State | Should -Be 'Completed'
    }
}

Describe 'Get-CopyJob' {
    It 'lists the jobs of the session with their properties' {
        $jobs = @(Get-CopyJob)
        $jobs.Count | Should -BeGreaterThan 0
        $jobs[0].PSObject.Properties.Name | Should -Contain 'PercentComplete'
        @(Get-CopyJob -State Completed).Count | Should -BeGreaterThan 0
    }

    It 'reports an unknown Id as CopyJobNotFound' {
        Get-CopyJob -Id 999999 -ErrorVariable problems -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $problems[0].FullyQualifiedErrorId | Should -BeLike 'CopyJobNotFound,*'
        $problems[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'returns jobs that survive serialization and still format as a table' {
        $file = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-jobs-$PID.xml"
        try {
            Get-CopyJob | Export-Clixml $file
            $back = @(Import-Clixml $file)
            $back[0].PSObject.TypeNames[0] | Should -Be 'Deserialized.Kcopyd.Protocol.CopyJobInfo'
            $back[0].BytesCopied | Should -Be (Get-CopyJob)[0].BytesCopied
            $back[0].Destination | Should -Be (Get-CopyJob)[0].Destination
            ($back | Format-Table | Out-String) | Should -Match 'Completed'
        } finally { Remove-Item $file -ErrorAction Ignore }
    }
}
