BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:source = New-TestLoopDevice -Name 'ids-src.img' -Size 16MB
    $script:target = New-TestLoopDevice -Name 'ids-dst.img' -Size 16MB
    $script:slowTargets = @(1, 2 | ForEach-Object { New-TestLoopDevice -Name "ids-slow$_.img" -Size 16MB })
    Write-RandomRegion -Path $script:source -Offset 0 -Length 16MB -Seed 31

    function Start-SmallCopy { Start-RegionCopy -Source $script:source -Destination $script:target -Length 64KB -Wait -Confirm:$false }
}

AfterAll {
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Internal jobs' {
    It 'a mirror resync and a scrub leave the next job id at the previous one plus 1, and the recovery copies are listed only with -IncludeInternal' {
        $before = Start-SmallCopy
        $first = New-TestLoopDevice -Name 'ids-m-a.img' -Size 64MB
        $second = New-TestLoopDevice -Name 'ids-m-b.img' -Size 64MB
        Write-RandomRegion -Path $first -Offset 0 -Length 64MB -Seed 32
        try {
            New-MirrorDevice -Name idsm -Leg $first, $second -Confirm:$false | Out-Null
            (Wait-MirrorDevice -Name idsm -TimeoutSeconds 120).State | Should -Be 'InSync'
            $after = Start-SmallCopy
            $after.Id | Should -Be ($before.Id + 1) -Because 'the 128 recovery copies took ids of their own'
            Test-MirrorDevice -Name idsm | Out-Null
            (Start-SmallCopy).Id | Should -Be ($after.Id + 1) -Because 'a scrub takes no job id either'
            $after = Get-CopyJob -Id ($after.Id + 1)

            $listed = @(Get-CopyJob)
            $listed.Id | Should -Contain $after.Id
            @($listed | Where-Object { $_.Internal -or $_.Id -lt 0 -or $_.Client -like 'mirror/*' }) | Should -BeNullOrEmpty

            $all = @(Get-CopyJob -IncludeInternal)
            $internal = @($all | Where-Object Internal)
            $internal.Count | Should -Be 100 -Because 'the host keeps the newest 100 of the 128 finished recovery copies'
            $internal | ForEach-Object { $_.Id | Should -BeLessThan 0 }
            @($internal.Client | Select-Object -Unique) | Should -Be 'mirror/idsm'
            @($internal.State | Select-Object -Unique) | Should -Be 'Completed'
            $internal[0].Source | Should -Be $first
            $internal[0].Destination | Should -Be @($second)
            @($all | Where-Object { -not $_.Internal }).Id | Should -Be $listed.Id -Because 'the admin''s jobs come first, as without the switch'

            # An internal id is found without the switch, is not stopped by id, and leaves the list when removed.
            $newest = $internal[-1]
            (Get-CopyJob -Id $newest.Id).Internal | Should -BeTrue
            Stop-CopyJob -Id $newest.Id -Confirm:$false -ErrorVariable refused -ErrorAction SilentlyContinue
            $refused[0].FullyQualifiedErrorId | Should -BeLike 'CopyJobInternal,*'
            Remove-CopyJob -Id $newest.Id -Confirm:$false
            @(Get-CopyJob -IncludeInternal).Id | Should -Not -Contain $newest.Id
            (Get-CopyJob -Id $after.Id).State | Should -Be 'Completed' -Because 'the admin''s history is untouched by the recovery'
        } finally {
            Remove-MirrorDevice -Name idsm -Confirm:$false -ErrorAction Continue
        }
    }
}

Describe 'Job ids from the pipeline' {
    It 'binds ids by value to Get-, Wait- and Remove-CopyJob' {
        $a = Start-SmallCopy
        $b = Start-SmallCopy
        @($a.Id, $b.Id | Get-CopyJob).Id | Should -Be @($a.Id, $b.Id)
        @($a.Id, $b.Id | Wait-CopyJob -TimeoutSeconds 30).State | Should -Be @('Completed', 'Completed')
        $a.Id, $b.Id | Remove-CopyJob -Confirm:$false
        @(Get-CopyJob).Id | Should -Not -Contain $a.Id
        @(Get-CopyJob).Id | Should -Not -Contain $b.Id
    }

    It 'binds the Id of objects by property name, and Get-CopyJob | Stop-CopyJob stops running jobs' {
        $slow = [Collections.Generic.List[object]]::new()
        try {
            foreach ($target in $script:slowTargets) { $slow.Add((Start-RegionCopy -Source $script:source -Destination $target -BytesPerSecond 1MB -Confirm:$false)) }
            @([pscustomobject]@{ Id = $slow[1].Id } | Get-CopyJob).Id | Should -Be $slow[1].Id
            Get-CopyJob -State Running, Queued | Where-Object Id -in $slow.Id | Stop-CopyJob -Confirm:$false
            @($slow | Wait-CopyJob -TimeoutSeconds 30).State | Should -Be @('Stopped', 'Stopped')
            @($slow | Get-CopyJob).BytesCopied | ForEach-Object { $_ | Should -BeLessThan 16MB }
        } finally {
            $slow | Stop-CopyJob -Confirm:$false -ErrorAction Ignore
        }
    }

    It 'reports each unknown id from the pipeline and goes on with the others' {
        $known = Start-SmallCopy
        $found = @(987654, $known.Id | Get-CopyJob -ErrorVariable missing -ErrorAction SilentlyContinue)
        $found.Id | Should -Be $known.Id
        $missing[0].FullyQualifiedErrorId | Should -BeLike 'CopyJobNotFound,*'
    }
}
