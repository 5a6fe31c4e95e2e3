# A refusal of one input object is a non-terminating error: -ErrorAction SilentlyContinue silences it, Stop stops
# with the ErrorId as FullyQualifiedErrorId, -ErrorVariable holds the ErrorRecord, and a pipeline goes on with the
# next object. Also: a mirror's bare name as -Source/-Destination, and a mirror piped in as the destination.

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Src = New-TestLoopDevice -Name 'ea-src.img' -Size 4MB
    $script:Src2 = New-TestLoopDevice -Name 'ea-src2.img' -Size 4MB
    $script:Dst = New-TestLoopDevice -Name 'ea-dst.img' -Size 4MB
    $script:Dst2 = New-TestLoopDevice -Name 'ea-dst2.img' -Size 4MB
    $script:Legs = 1..2 | ForEach-Object { New-TestLoopDevice -Name "ea-leg$_.img" -Size 4MB }
    $script:Spare = New-TestLoopDevice -Name 'ea-spare.img' -Size 4MB
    Write-RandomRegion -Path $Src -Offset 0 -Length 4MB -Seed 3301
    Write-RandomRegion -Path $Src2 -Offset 0 -Length 4MB -Seed 3302
    New-MirrorDevice ea $Legs -Confirm:$false | Out-Null
    (Wait-MirrorDevice ea -TimeoutSeconds 60).State | Should -Be 'InSync'
    New-CopyClient eac -Confirm:$false | Out-Null
}

AfterAll {
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'A refusal of <Cmdlet> (<Id>)' -ForEach @(
    @{ Cmdlet = 'Start-RegionCopy'; Id = 'DeviceNotFound'; Run = { param($c) Start-RegionCopy /dev/kcopyd-no-such $Dst -Length 4096 -Confirm:$false @c } }
    @{ Cmdlet = 'Clear-Region'; Id = 'RegionOutOfRange'; Run = { param($c) Clear-Region $Dst 0 8MB -Confirm:$false @c } }
    @{ Cmdlet = 'New-MirrorDevice'; Id = 'TooFewLegs'; Run = { param($c) New-MirrorDevice ea1 $Spare -Confirm:$false @c } }
    @{ Cmdlet = 'Add-MirrorLeg'; Id = 'LegInUse'; Run = { param($c) Add-MirrorLeg ea $Legs[0] -Confirm:$false @c } }
    @{ Cmdlet = 'Remove-MirrorLeg'; Id = 'LegNotFound'; Run = { param($c) Remove-MirrorLeg ea /dev/kcopyd-no-such -Confirm:$false @c } }
    @{ Cmdlet = 'Repair-MirrorDevice'; Id = 'MirrorNotFound'; Run = { param($c) Repair-MirrorDevice nosuch -Confirm:$false @c } }
    @{ Cmdlet = 'Test-MirrorDevice'; Id = 'MirrorNotFound'; Run = { param($c) Test-MirrorDevice nosuch @c } }
    @{ Cmdlet = 'Set-MirrorDevice'; Id = 'MirrorNotFound'; Run = { param($c) Set-MirrorDevice nosuch -RecoveryBytesPerSecond 0 -Confirm:$false @c } }
    @{ Cmdlet = 'Remove-MirrorDevice'; Id = 'MirrorNotFound'; Run = { param($c) Remove-MirrorDevice nosuch -Confirm:$false @c } }
    @{ Cmdlet = 'Wait-MirrorDevice'; Id = 'MirrorNotFound'; Run = { param($c) Wait-MirrorDevice nosuch @c } }
    @{ Cmdlet = 'Publish-MirrorDevice'; Id = 'InvalidExportAddress'; Run = { param($c) Publish-MirrorDevice ea -UnixSocket '/tmp/kcopyd-ea.sock' -Confirm:$false @c } }
    @{ Cmdlet = 'Unpublish-MirrorDevice'; Id = 'MirrorNotFound'; Run = { param($c) Unpublish-MirrorDevice nosuch -Confirm:$false @c } }
    @{ Cmdlet = 'New-CopyClient'; Id = 'ClientExists'; Run = { param($c) New-CopyClient eac -Confirm:$false @c } }
    @{ Cmdlet = 'Set-CopyClient'; Id = 'ClientNotFound'; Run = { param($c) Set-CopyClient nosuch -BytesPerSecond 0 -Confirm:$false @c } }
    @{ Cmdlet = 'Remove-CopyClient'; Id = 'ClientIsDefault'; Run = { param($c) Remove-CopyClient default -Confirm:$false @c } }
    @{ Cmdlet = 'Get-CopyJob'; Id = 'CopyJobNotFound'; Run = { param($c) Get-CopyJob -Id 987654321 @c } }
    @{ Cmdlet = 'Stop-CopyJob'; Id = 'CopyJobNotFound'; Run = { param($c) Stop-CopyJob -Id 987654321 -Confirm:$false @c } }
    @{ Cmdlet = 'Remove-CopyJob'; Id = 'CopyJobNotFound'; Run = { param($c) Remove-CopyJob -Id 987654321 -Confirm:$false @c } }
    @{ Cmdlet = 'Wait-CopyJob'; Id = 'CopyJobNotFound'; Run = { param($c) Wait-CopyJob -Id 987654321 @c } }
    @{ Cmdlet = 'Set-KcopydHost'; Id = 'InvalidSetting'; Run = { param($c) Set-KcopydHost -JobHistoryMaxAge ([TimeSpan]::FromSeconds(-1)) -Confirm:$false @c } }
    @{ Cmdlet = 'Stop-KcopydHost'; Id = 'HostInUse'; Run = { param($c) Stop-KcopydHost -Confirm:$false @c } }
) {
    It 'is silenced by -ErrorAction SilentlyContinue, and the script goes on' {
        $thrown = $null
        $written = try { . $Run @{ ErrorAction = 'SilentlyContinue' } 2>&1 } catch { $thrown = $_ }
        $thrown | Should -BeNullOrEmpty -Because 'a non-terminating error does not end the statement'
        @($written | Where-Object { $_ -is [Management.Automation.ErrorRecord] }) | Should -BeNullOrEmpty
    }

    It 'is silenced by -ErrorAction Ignore' {
        @(. $Run @{ ErrorAction = 'Ignore' } 2>&1 | Where-Object { $_ -is [Management.Automation.ErrorRecord] }) | Should -BeNullOrEmpty
    }

    It 'stops with -ErrorAction Stop, the ErrorId as FullyQualifiedErrorId' {
        $err = { . $Run @{ ErrorAction = 'Stop' } } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike "$Id,Kcopyd.Commands.*"
        $err.Exception | Should -Not -BeOfType [Management.Automation.CmdletInvocationException]
    }

    It 'leaves an ErrorRecord with the ErrorId in -ErrorVariable' {
        $ev = $null
        . $Run @{ ErrorAction = 'SilentlyContinue'; ErrorVariable = 'ev' } | Out-Null
        @($ev).Count | Should -Be 1
        $ev[0] | Should -BeOfType [Management.Automation.ErrorRecord]
        $ev[0].FullyQualifiedErrorId | Should -BeLike "$Id,Kcopyd.Commands.*"
    }
}

Describe 'A pipeline with one bad object' {
    It 'Clear-Region zeroes the other devices and reports the bad one' {
        Write-RandomRegion -Path $Dst -Offset 0 -Length 1MB -Seed 3311
        Write-RandomRegion -Path $Dst2 -Offset 0 -Length 1MB -Seed 3312
        $jobs = $Dst, '/dev/kcopyd-no-such', $Dst2 | Clear-Region -Offset 0 -Length 1MB -Wait -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable ev
        @($jobs.State) | Should -Be @('Completed', 'Completed')
        @($ev).Count | Should -Be 1
        $ev[0].FullyQualifiedErrorId | Should -BeLike 'DeviceNotFound,*'
        $ev[0].TargetObject | Should -Be '/dev/kcopyd-no-such'
        $zero = [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData([byte[]]::new(1MB)))
        Get-TestSha256 $Dst 0 1MB | Should -Be $zero
        Get-TestSha256 $Dst2 0 1MB | Should -Be $zero
    }

    It 'Start-RegionCopy copies to each piped destination, one job each, and reports the bad one' {
        $jobs = $Dst, '/dev/kcopyd-no-such', $Dst2 | Start-RegionCopy -Source $Src -Length 1MB -Wait -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable ev
        @($jobs).Count | Should -Be 2
        @($jobs.Id | Sort-Object -Unique).Count | Should -Be 2
        @($ev.FullyQualifiedErrorId) | Should -BeLike 'DeviceNotFound,*'
        Get-TestSha256 $Dst 0 1MB | Should -Be (Get-TestSha256 $Src 0 1MB)
        Get-TestSha256 $Dst2 0 1MB | Should -Be (Get-TestSha256 $Src 0 1MB)
    }

    It 'Repair-MirrorDevice repairs the mirror that exists and reports the one that does not' {
        $out = [pscustomobject]@{ Name = 'nosuch' }, [pscustomobject]@{ Name = 'ea' } |
            Repair-MirrorDevice -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable ev
        @($out.Name) | Should -Be @('ea')
        @($ev.FullyQualifiedErrorId) | Should -BeLike 'MirrorNotFound,*'
    }

    It 'Set-CopyClient changes the client that exists and reports the one that does not' {
        $out = 'nosuch', 'eac' | Set-CopyClient -BytesPerSecond 2MB -PassThru -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable ev
        @($out.Name) | Should -Be @('eac')
        (Get-CopyClient eac).BytesPerSecond | Should -Be 2MB
        @($ev.FullyQualifiedErrorId) | Should -BeLike 'ClientNotFound,*'
    }

    It 'stops at the bad object under -ErrorAction Stop, having done the ones before it' {
        Write-RandomRegion -Path $Dst2 -Offset 0 -Length 1MB -Seed 3313
        $before = Get-TestSha256 $Dst2 0 1MB
        $err = { $Dst, '/dev/kcopyd-no-such', $Dst2 | Clear-Region -Offset 0 -Length 1MB -Wait -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike 'DeviceNotFound,*'
        Get-TestSha256 $Dst2 0 1MB | Should -Be $before -Because 'the pipeline stopped before the object after the bad one'
    }
}

Describe 'A mirror named by its bare name, or piped in' {
    BeforeEach {
        $script:Away = Join-Path (Split-Path (New-TestImage -Name 'ea-cwd.marker' -Size 0)) "cwd-$(Get-Random)"
        New-Item -ItemType Directory $Away | Out-Null
        Push-Location $Away
    }
    AfterEach { Pop-Location }

    It 'is the destination of -Destination ea where no file ea exists' {
        $job = Start-RegionCopy -Source $Src -Destination ea -Length 1MB -Wait -Confirm:$false
        $job.State | Should -Be 'Completed'
        $job.Destination | Should -Be @('ea')
        foreach ($leg in $Legs) { Get-TestSha256 $leg 0 1MB | Should -Be (Get-TestSha256 $Src 0 1MB) -Because "$leg is a leg of ea" }
    }

    It 'is the source of -Source ea' {
        Write-RandomRegion -Path $Dst2 -Offset 0 -Length 1MB -Seed 3321
        (Start-RegionCopy -Source ea -Destination $Dst2 -Length 1MB -Wait -Confirm:$false).State | Should -Be 'Completed'
        Get-TestSha256 $Dst2 0 1MB | Should -Be (Get-TestSha256 $Legs[0] 0 1MB)
    }

    It 'is a file when a file of that name is where the cmdlet runs' {
        $file = New-Item -ItemType File (Join-Path $Away 'ea')
        $stream = [IO.File]::OpenWrite($file.FullName); $stream.SetLength(1MB); $stream.Dispose()
        $legsBefore = foreach ($leg in $Legs) { Get-TestSha256 $leg 0 4MB }
        (Start-RegionCopy -Source $Src2 -Destination ea -Length 1MB -Wait -Confirm:$false).State | Should -Be 'Completed'
        Get-TestSha256 $file.FullName 0 1MB | Should -Be (Get-TestSha256 $Src2 0 1MB)
        $Legs | ForEach-Object { Get-TestSha256 $_ 0 4MB } | Should -Be $legsBefore
    }

    It 'binds from Get-MirrorDevice as the destination of Start-RegionCopy, without prompting' {
        $job = Get-MirrorDevice ea | Start-RegionCopy -Source $Src2 -Length 1MB -Wait -Confirm:$false
        $job.State | Should -Be 'Completed'
        $job.Destination | Should -Be @('ea')
        foreach ($leg in $Legs) { Get-TestSha256 $leg 0 1MB | Should -Be (Get-TestSha256 $Src2 0 1MB) }
    }

    It 'binds from Get-MirrorDevice as the device of Clear-Region' {
        (Get-MirrorDevice ea | Clear-Region -Offset 0 -Length 1MB -Wait -Confirm:$false).State | Should -Be 'Completed'
        $zero = [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData([byte[]]::new(1MB)))
        foreach ($leg in $Legs) { Get-TestSha256 $leg 0 1MB | Should -Be $zero }
    }
}
