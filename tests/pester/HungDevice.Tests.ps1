BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null

    # Every admin action against a hung device returns within this (the host's own bounds are 2 to 5 s).
    $script:Bound = 8

    function Wait-Until([scriptblock] $Condition, [string] $Because, [int] $Seconds = 30) {
        $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
        while (-not (& $Condition)) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "Timed out after $Seconds s waiting for $Because." }
            Start-Sleep -Milliseconds 100
        }
    }

    # Runs $Script in a runspace of this process, stops it as Ctrl+C does (PowerShell.Stop: the cmdlet's
    # StopProcessing), and returns how long the stop took.
    function Measure-Stop([string] $Script, [object[]] $Arguments) {
        $state = [Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
        $state.ImportPSModule("$PSScriptRoot/../../Kcopyd.psd1")
        $runspace = [runspacefactory]::CreateRunspace($state)
        $runspace.Open()
        $shell = [powershell]::Create()
        $shell.Runspace = $runspace
        $null = $shell.AddScript($Script)
        foreach ($argument in $Arguments) { $null = $shell.AddArgument($argument) }
        $null = $shell.BeginInvoke()
        Start-Sleep -Seconds 1
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $stop = $shell.BeginStop($null, $null)
        $stopped = $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(30))
        $seconds = $clock.Elapsed.TotalSeconds
        if ($stopped) { $shell.Dispose(); $runspace.Dispose() }
        [pscustomobject]@{ Stopped = $stopped; Seconds = $seconds }
    }

    $script:Source = New-TestLoopDevice -Name 'hd-src.img' -Size 16MB
    $script:Good = New-TestLoopDevice -Name 'hd-good.img' -Size 16MB
    $script:Paused = New-PausableDisk 'hd-paused'
    Write-RandomRegion -Path $Source -Offset 0 -Length 16MB -Seed 1501
}

AfterAll {
    if ($script:Paused) { try { Send-PauseControl $Paused.Socket 'r' | Out-Null } catch { } }
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Stopping a copy job on a device that hangs' {
    It 'returns within the bound with the job Stopping, and the job is Stopped with its pages back once the <Side> answers' -ForEach @(
        @{ Side = 'destination' }
        @{ Side = 'source' }
    ) {
        $pages = (Get-CopyClient default).PageCount
        Send-PauseControl $Paused.Socket 'p' | Should -Be 'P'
        try {
            $job = if ($Side -eq 'destination') { Start-RegionCopy $Source $Paused.Device -Confirm:$false }
                   else { Start-RegionCopy $Paused.Device $Good -Confirm:$false }
            Wait-Until { (Get-CopyJob -Id $job.Id).IoInFlight -gt 0 } -Because 'the job to have I/O on the paused disk'
            $clock = [Diagnostics.Stopwatch]::StartNew()
            Stop-CopyJob -Id $job.Id -Confirm:$false -WarningVariable warned -WarningAction SilentlyContinue
            $seconds = $clock.Elapsed.TotalSeconds
            $seconds | Should -BeLessThan $Bound -Because 'stopping a job never waits on the device'
            ($warned -join "`n") | Should -Match 'is Stopping: \d+ I/O request'
            $now = Get-CopyJob -Id $job.Id
            $now.State | Should -Be 'Stopping'
            $now.IsFinished | Should -BeFalse -Because 'Wait-CopyJob waits for a Stopping job'
            $now.IoInFlight | Should -BeGreaterThan 0
            (Get-CopyClient default).FreePages | Should -BeLessThan $pages -Because 'the pages under the hung I/O stay the job''s'
            (Get-CopyJob -State Stopping).Id | Should -Contain $job.Id
        } finally {
            Send-PauseControl $Paused.Socket 'r' | Should -Be 'R'
        }
        $ended = Wait-CopyJob -Id $job.Id -TimeoutSeconds 30
        $ended.State | Should -Be 'Stopped'
        $ended.IoInFlight | Should -Be 0
        (Get-CopyClient default).FreePages | Should -Be $pages
    }
}

Describe 'Ctrl+C while following a job on a hung device' {
    It 'stops <Case> within the bound; the job goes on in the host' -ForEach @(
        @{ Case = 'Start-RegionCopy -Wait'; Script = 'param($s, $d) Start-RegionCopy $s $d -Wait -Confirm:$false' }
        @{ Case = 'Wait-CopyJob'; Script = 'param($s, $d) $j = Start-RegionCopy $s $d -Confirm:$false; Wait-CopyJob -Id $j.Id' }
    ) {
        Send-PauseControl $Paused.Socket 'p' | Should -Be 'P'
        try {
            $stop = Measure-Stop $Script @($Source, $Paused.Device)
            $stop.Stopped | Should -BeTrue
            $stop.Seconds | Should -BeLessThan $Bound
            $left = @(Get-CopyJob | Where-Object { -not $_.IsFinished })
            $left.Count | Should -Be 1 -Because 'the copy itself goes on, held by the paused disk'
            Stop-CopyJob -Id $left[0].Id -Confirm:$false -WarningAction SilentlyContinue
        } finally {
            Send-PauseControl $Paused.Socket 'r' | Should -Be 'R'
        }
        (Wait-CopyJob -Id $left[0].Id -TimeoutSeconds 30).State | Should -Be 'Stopped'
    }
}

Describe 'A mirror leg that hangs' {
    It 'is failed as Hung after the leg timeout: the write is acknowledged, the mirror Degraded, and Repair brings the leg back once it answers' {
        $mirror = New-MirrorDevice hd1 $Good, $Paused.Device -NoSync -LegTimeoutSeconds 30 -Confirm:$false
        $mirror.LegTimeoutSeconds | Should -Be 30
        Set-MirrorDevice hd1 -LegTimeoutSeconds 2 -PassThru | Select-Object -ExpandProperty LegTimeoutSeconds | Should -Be 2
        $definition = Get-Content (Join-Path $env:KCOPYD_STATE_DIR 'mirrors/hd1.json') -Raw | ConvertFrom-Json
        $definition.LegTimeoutSeconds | Should -Be 2 -Because 'the next host assembles it with the same timeout'
        Send-PauseControl $Paused.Socket 'p' | Should -Be 'P'
        try {
            $clock = [Diagnostics.Stopwatch]::StartNew()
            $copy = Start-RegionCopy $Source hd1 -Length 4MB -Wait -Confirm:$false -WarningAction SilentlyContinue
            $seconds = $clock.Elapsed.TotalSeconds
            $seconds | Should -BeLessThan 20 -Because 'a 2 s leg timeout fails the leg, and the writes go on to the other'
            $copy.State | Should -Be 'Completed'
            $status = Get-MirrorDevice hd1
            $status.State | Should -Be 'Degraded'
            $leg = $status.Legs | Where-Object Path -eq $Paused.Device
            $leg.Health | Should -Be 'Hung'
            $leg.IoInFlight | Should -BeGreaterThan 0 -Because 'what the kernel holds is not taken back'
            ($status.Warnings -join "`n") | Should -Match 'is hung'
            Get-TestSha256 $Good 0 4MB | Should -Be (Get-TestSha256 $Source 0 4MB)
            # While it hangs, Repair leaves it be, and says why.
            Repair-MirrorDevice hd1 -Confirm:$false -ErrorVariable failed -ErrorAction SilentlyContinue | Out-Null
            $failed[0].FullyQualifiedErrorId | Should -BeLike 'LegStillFailing,*'
        } finally {
            Send-PauseControl $Paused.Socket 'r' | Should -Be 'R'
        }
        Wait-Until { ((Get-MirrorDevice hd1).Legs | Where-Object Path -eq $Paused.Device).Health -eq 'Dead' } -Because 'the hung leg to answer and be dead'
        Repair-MirrorDevice hd1 -Confirm:$false | Out-Null
        Wait-MirrorDevice hd1 -TimeoutSeconds 60 | Out-Null
        (Get-MirrorDevice hd1).State | Should -Be 'InSync'
        Get-TestSha256 $Paused.Device 0 4MB | Should -Be (Get-TestSha256 $Source 0 4MB)
        Remove-MirrorDevice hd1 -Confirm:$false
    }

    It 'does not hang Remove-MirrorDevice -Force even with no leg timeout; the legs are let go once the leg answers' {
        New-MirrorDevice hd2 $Good, $Paused.Device -NoSync -LegTimeoutSeconds 0 -Confirm:$false | Out-Null
        Send-PauseControl $Paused.Socket 'p' | Should -Be 'P'
        try {
            $job = Start-RegionCopy $Source hd2 -Length 4MB -Confirm:$false
            Start-Sleep -Milliseconds 500
            (Get-CopyJob -Id $job.Id).State | Should -Be 'Running' -Because 'with no leg timeout its writes wait for the paused leg'
            $clock = [Diagnostics.Stopwatch]::StartNew()
            Remove-MirrorDevice hd2 -Force -Confirm:$false -WarningVariable warned -WarningAction SilentlyContinue
            $seconds = $clock.Elapsed.TotalSeconds
            $seconds | Should -BeLessThan $Bound
            ($warned -join "`n") | Should -Match 'has not returned'
            @(Get-MirrorDevice).Name | Should -Not -Contain 'hd2'
            (Get-CopyJob -Id $job.Id).State | Should -Be 'Stopping'
        } finally {
            Send-PauseControl $Paused.Socket 'r' | Should -Be 'R'
        }
        (Wait-CopyJob -Id $job.Id -TimeoutSeconds 30 -WarningAction SilentlyContinue).IsFinished | Should -BeTrue
        Wait-Until {
            try { New-MirrorDevice hd2b $Good, $Paused.Device -NoSync -Confirm:$false -ErrorAction Stop | Out-Null; $true }
            catch { if ($_.FullyQualifiedErrorId -notlike 'LegInUse,*') { throw }; $false }
        } -Because 'the removed mirror to let go of its legs'
        Remove-MirrorDevice hd2b -Confirm:$false
    }
}

Describe 'Removing a copy client whose job hangs' {
    It 'returns within the bound with the job Stopping; the job is Stopped once the disk answers' {
        New-CopyClient hdclient -PageCount 32 -Confirm:$false | Out-Null
        Send-PauseControl $Paused.Socket 'p' | Should -Be 'P'
        try {
            $job = Start-RegionCopy $Source $Paused.Device -Client hdclient -Confirm:$false
            Wait-Until { (Get-CopyJob -Id $job.Id).IoInFlight -gt 0 } -Because 'the job to have I/O on the paused disk'
            $clock = [Diagnostics.Stopwatch]::StartNew()
            Remove-CopyClient hdclient -Force -Confirm:$false -WarningVariable warned -WarningAction SilentlyContinue
            $seconds = $clock.Elapsed.TotalSeconds
            $seconds | Should -BeLessThan $Bound
            ($warned -join "`n") | Should -Match "job\(s\) $($job.Id) are Stopping"
            @(Get-CopyClient).Name | Should -Not -Contain 'hdclient'
            (Get-CopyJob -Id $job.Id).State | Should -Be 'Stopping'
        } finally {
            Send-PauseControl $Paused.Socket 'r' | Should -Be 'R'
        }
        (Wait-CopyJob -Id $job.Id -TimeoutSeconds 30).State | Should -Be 'Stopped'
    }
}

Describe 'Stopping the host while a job and a mirror hang' {
    It 'the host exits within the bound, and its log names what had not returned' {
        New-MirrorDevice hd3 $Good, $Paused.Device -NoSync -LegTimeoutSeconds 0 -Confirm:$false | Out-Null
        $log = Join-Path $env:KCOPYD_RUNTIME_DIR 'host.log'
        $hostId = (Get-KcopydHost).ProcessId
        Send-PauseControl $Paused.Socket 'p' | Should -Be 'P'
        try {
            # With no leg timeout, the job's writes into the mirror hang, and so does the mirror's close.
            $job = Start-RegionCopy $Source hd3 -Length 4MB -Confirm:$false
            Start-Sleep -Milliseconds 500
            $clock = [Diagnostics.Stopwatch]::StartNew()
            Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30 -WarningVariable warned -WarningAction SilentlyContinue
            $seconds = $clock.Elapsed.TotalSeconds
            $seconds | Should -BeLessThan ($Bound + 2)
            $warned | Should -BeNullOrEmpty -Because 'the process ended'
            Get-Process -Id $hostId -ErrorAction Ignore | Should -BeNullOrEmpty
            $text = Get-Content $log -Raw
            $text | Should -Match "Copy job $($job.Id) is Stopping with \d+ I/O request"
            $text | Should -Match "Mirror 'hd3' is closing, but I/O to a leg has not returned"
        } finally {
            Send-PauseControl $Paused.Socket 'r' | Should -Be 'R'
        }
        # The next cmdlet starts a host that assembles the mirror again from its definition.
        Wait-Until { (Get-MirrorDevice -ErrorAction SilentlyContinue).Name -contains 'hd3' } -Because 'the new host to assemble hd3'
        Remove-MirrorDevice hd3 -Confirm:$false
    }
}
