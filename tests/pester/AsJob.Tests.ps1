BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Source = New-TestLoopDevice -Name 'asjob-src.img' -Size 32MB
    $script:Target = New-TestLoopDevice -Name 'asjob-dst.img' -Size 32MB
    Write-RandomRegion -Path $Source -Offset 0 -Length 32MB -Seed 31
    $script:Failing = New-FailingDisk 'asjob-failing' -Size '16M'
    New-Item -ItemType File $Failing.FailWrites | Out-Null

    function Reset-Target {
        Write-RandomRegion -Path $Target -Offset 0 -Length 32MB -Seed 32
        Get-TestSha256 $Target 0 32MB
    }

    # The follower threads of this pwsh: .NET gives a named thread's name to the OS thread, so /proc shows it.
    function Get-FollowerThread([long] $CopyJobId) {
        @(Get-ChildItem "/proc/$PID/task" | Where-Object { (Get-Content "$($_.FullName)/comm" -ErrorAction Ignore) -eq "Kcopyd job $CopyJobId" })
    }

    function Wait-Until([scriptblock] $Condition, [int] $TimeoutSeconds = 20) {
        $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
        while (-not (& $Condition)) {
            if ([DateTime]::UtcNow -gt $deadline) { return $false }
            Start-Sleep -Milliseconds 50
        }
        $true
    }
}

AfterAll {
    Get-Job | Where-Object PSJobTypeName -EQ 'KcopydCopyJob' | Remove-Job -Force
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Start-RegionCopy -AsJob' {
    It 'returns a PowerShell job that Get-Job lists and Wait-Job and Receive-Job finish with the copy job' {
        Reset-Target | Should -Not -Be (Get-TestSha256 $Source 0 32MB)

        $job = Start-RegionCopy $Source $Target -AsJob -Confirm:$false

        $job | Should -BeOfType ([System.Management.Automation.Job])
        $job.PSJobTypeName | Should -Be 'KcopydCopyJob'
        $job.Name | Should -Be "CopyJob$($job.CopyJobId)"
        $job.Command | Should -BeLike "Start-RegionCopy: copy 33554432 bytes from $Source at 0 to $Target at 0"
        (Get-Job -Id $job.Id).InstanceId | Should -Be $job.InstanceId
        (Get-Job -Name $job.Name).Id | Should -Be $job.Id
        $job | Wait-Job -Timeout 30 | Should -Be $job
        $job.State | Should -Be 'Completed'
        $out = @(Receive-Job $job -ErrorVariable problems)
        $problems | Should -BeNullOrEmpty
        $out.Count | Should -Be 1
        $out[0] | Should -BeOfType ([Kcopyd.Protocol.CopyJobInfo])
        $out[0].Id | Should -Be $job.CopyJobId
        $out[0].State | Should -Be 'Completed'
        $out[0].BytesCopied | Should -Be 32MB
        Get-TestSha256 $Target 0 32MB | Should -Be (Get-TestSha256 $Source 0 32MB)
        (Get-CopyJob -Id $job.CopyJobId).State | Should -Be 'Completed'
        $job | Remove-Job
    }

    It 'keeps the copy''s progress in the job''s Progress stream' {
        $job = Start-RegionCopy $Source $Target -Length 8MB -BytesPerSecond 4MB -AsJob -Confirm:$false
        $job | Wait-Job -Timeout 30 | Out-Null
        $progress = @($job.Progress)
        $progress.Count | Should -BeGreaterThan 1 -Because '8 MiB at 4 MiB/s take 2 s, and a record comes every half second'
        $progress[0].Activity | Should -Be "Copying $Source"
        $progress[-1].RecordType | Should -Be 'Completed'
        $progress[-1].PercentComplete | Should -Be 100
        $job | Remove-Job
    }

    It 'Stop-Job stops the copy job in the host' {
        Reset-Target | Out-Null
        $job = Start-RegionCopy $Source $Target -BytesPerSecond 2MB -AsJob -Confirm:$false
        Wait-Until { (Get-CopyJob -Id $job.CopyJobId).BytesCopied -gt 0 } | Should -BeTrue
        $job.State | Should -Be 'Running'

        $job | Stop-Job

        $job.State | Should -Be 'Stopped'
        $copy = Get-CopyJob -Id $job.CopyJobId
        $copy.State | Should -Be 'Stopped'
        $copy.BytesCopied | Should -BeLessThan 32MB
        (Receive-Job $job).State | Should -Be 'Stopped'
        $job | Remove-Job
    }

    It 'ends Failed when the copy fails, with the copy''s error in Receive-Job''s error stream' {
        $job = Start-RegionCopy $Source $Failing.Device -Length 1MB -Force -AsJob -Confirm:$false
        $job | Wait-Job -Timeout 30 | Out-Null

        $job.State | Should -Be 'Failed'
        $out = @(Receive-Job $job -ErrorVariable problems -ErrorAction SilentlyContinue)
        $problems.Count | Should -Be 1
        $problems[0].FullyQualifiedErrorId | Should -BeLike 'CopyWriteFailed*'
        $problems[0].CategoryInfo.Category | Should -Be 'WriteError'
        $problems[0].Exception.Message | Should -BeLike "*Writing '$($Failing.Device)' failed*"
        $out[0].State | Should -Be 'Failed'
        $job | Remove-Job
    }

    It 'Remove-Job removes it from the session''s jobs, and -Force on a running one leaves no thread behind' {
        $job = Start-RegionCopy $Source $Target -BytesPerSecond 2MB -AsJob -Confirm:$false
        @(Get-FollowerThread $job.CopyJobId).Count | Should -Be 1

        { $job | Remove-Job -ErrorAction Stop } | Should -Throw -Because 'PowerShell removes a running job only with -Force'
        $job | Remove-Job -Force

        Get-Job -Id $job.Id -ErrorAction Ignore | Should -BeNullOrEmpty
        @(Get-Job | Where-Object InstanceId -EQ $job.InstanceId) | Should -BeNullOrEmpty
        Wait-Until { @(Get-FollowerThread $job.CopyJobId).Count -eq 0 } -TimeoutSeconds 10 | Should -BeTrue
        (Get-CopyJob -Id $job.CopyJobId).State | Should -Be 'Stopped' -Because 'Remove-Job -Force stops the job first'
    }

    It 'starts no job under -WhatIf and writes nothing to the device' {
        $before = Reset-Target
        $jobs = @(Get-Job).Count
        $copies = @(Get-CopyJob).Count

        $out = Start-RegionCopy $Source $Target -AsJob -WhatIf

        $out | Should -BeNullOrEmpty
        @(Get-Job).Count | Should -Be $jobs
        @(Get-CopyJob).Count | Should -Be $copies
        Get-TestSha256 $Target 0 32MB | Should -Be $before
    }

    It 'refuses -AsJob with -Wait (AsJobWithWait) before anything is written' {
        $before = Reset-Target
        $err = { Start-RegionCopy $Source $Target -AsJob -Wait -Confirm:$false } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike 'AsJobWithWait,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        Get-TestSha256 $Target 0 32MB | Should -Be $before
    }
}

Describe 'Clear-Region -AsJob' {
    It 'zeroes the region in a job, which Receive-Job finishes with the CopyJobInfo' {
        Reset-Target | Out-Null
        $job = Clear-Region $Target 1MB 4MB -AsJob -Confirm:$false
        $job.Command | Should -Be "Clear-Region: zero 4194304 bytes of $Target at 1048576"
        $job | Wait-Job -Timeout 30 | Out-Null
        $job.State | Should -Be 'Completed'
        $info = Receive-Job $job
        $info.State | Should -Be 'Completed'
        $info.Source | Should -BeNullOrEmpty
        Get-TestSha256 $Target 1MB 4MB | Should -Be ([Convert]::ToHexString([Security.Cryptography.SHA256]::HashData([byte[]]::new(4MB))))
        $job | Remove-Job
    }

    It 'starts no job under -WhatIf and zeroes nothing' {
        $before = Reset-Target
        $jobs = @(Get-Job).Count
        Clear-Region $Target 0 4MB -AsJob -WhatIf | Should -BeNullOrEmpty
        @(Get-Job).Count | Should -Be $jobs
        Get-TestSha256 $Target 0 32MB | Should -Be $before
    }
}

Describe '-Verbose' {
    It 'Start-RegionCopy says what the engine decided: sub-jobs, depth, backend, throttle, alignment, direct I/O' {
        $lines = @(Start-RegionCopy $Source $Target -Length 4MB -BytesPerSecond 64MB -Wait -Confirm:$false -Verbose 4>&1 |
            Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message) -join "`n"
        $lines | Should -Match "(?m)^Copy job \d+ on client 'default': sub-jobs of 2 MiB, 4 in flight, I/O backend (io_uring|blocking) \(depth 64\)"
        $lines | Should -Match "throttle: client 'default' unthrottled; the job's own limit 64 MiB/s"
        $lines | Should -Match 'alignment: offsets and length are multiples of 512 bytes'
        $lines | Should -Match ([regex]::Escape("source '$Source': block device, direct I/O (O_DIRECT), 512-byte logical blocks"))
        $lines | Should -Match ([regex]::Escape("destination '$Target': block device, direct I/O (O_DIRECT), 512-byte logical blocks"))
    }

    It 'Clear-Region says how it zeroes: zero chunks and the fast path it tries' {
        $lines = @(Clear-Region $Target 0 1MB -Wait -Confirm:$false -Verbose 4>&1 |
            Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message) -join "`n"
        $lines | Should -Match 'zero chunks of 64 MiB'
        $lines | Should -Match ([regex]::Escape("destination '$Target': block device, direct I/O (O_DIRECT), 512-byte logical blocks; zeroes by BLKZEROOUT"))
    }

    It 'names the largest logical block size as the alignment, and an image file as such' {
        $wide = New-TestLoopDevice -Name 'asjob-4k.img' -Size 8MB -SectorSize 4096
        $image = New-TestImage -Name 'asjob-file.img' -Size 8MB
        $lines = @(Start-RegionCopy $Source $wide, $image -Length 1MB -Wait -Confirm:$false -Verbose 4>&1 |
            Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message) -join "`n"
        $lines | Should -Match 'alignment: offsets and length are multiples of 4096 bytes'
        $lines | Should -Match ([regex]::Escape("destination '$wide': block device, direct I/O (O_DIRECT), 4096-byte logical blocks"))
        $lines | Should -Match ([regex]::Escape("destination '$image': image file, "))
    }

    It 'says an NBD export zeroes by NBD write-zeroes when the server takes them' {
        $socket = Join-Path (Split-Path (New-TestImage -Name 'asjob-nbd.marker' -Size 0)) 'asjob-nbd.sock'
        $nbdkit = [Diagnostics.Process]::Start('nbdkit', @('--exit-with-parent', '-f', '-U', $socket, 'memory', '4M'))
        try {
            Wait-Until { Test-Path $socket } | Should -BeTrue
            $lines = @(Clear-Region "nbd+unix:///?socket=$socket" 0 1MB -Wait -Confirm:$false -Verbose 4>&1 |
                Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message) -join "`n"
            $lines | Should -Match 'NBD export, takes NBD_CMD_WRITE_ZEROES, 512-byte logical blocks; zeroes by NBD write-zeroes\.'
        } finally {
            if (-not $nbdkit.HasExited) { $nbdkit.Kill() }
            $nbdkit.WaitForExit()
        }
    }

    It 'says nothing of it without -Verbose' {
        $lines = @(Start-RegionCopy $Source $Target -Length 1MB -Wait -Confirm:$false 4>&1 | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] })
        $lines | Should -BeNullOrEmpty
    }
}

Describe 'A job that fails' {
    It 'with -Wait, writes its error as an ErrorRecord with the job''s ErrorId and the job as target' {
        $job = Start-RegionCopy $Source $Failing.Device -Length 1MB -Force -Wait -Confirm:$false -ErrorVariable problems -ErrorAction SilentlyContinue
        $job.State | Should -Be 'Failed'
        $problems.Count | Should -Be 1
        $problems[0].FullyQualifiedErrorId | Should -BeLike 'CopyWriteFailed,*'
        $problems[0].TargetObject.Id | Should -Be $job.Id
    }

    It 'without -Wait, says so when it has failed by the time the cmdlet returns' {
        # The write fails at the first I/O, mostly within the host's first wait for a new job (50 ms); on a loaded
        # machine some starts answer before it: those are Running and say nothing, the others must say it.
        $failed = 0
        foreach ($attempt in 1..5) {
            $job = Start-RegionCopy $Source $Failing.Device -Length 64KB -Force -Confirm:$false -ErrorVariable problems -ErrorAction SilentlyContinue
            if ($job.State -ne 'Failed') {
                $problems | Should -BeNullOrEmpty
                continue
            }
            $failed++
            $problems.Count | Should -Be 1
            $problems[0].FullyQualifiedErrorId | Should -BeLike 'CopyWriteFailed,*'
            $problems[0].TargetObject.Id | Should -Be $job.Id
            $problems[0].Exception.Message | Should -BeLike "Copy job $($job.Id) failed: Writing '$($Failing.Device)' failed*"
        }
        $failed | Should -BeGreaterThan 0 -Because 'a job that fails at its first write has failed by the answer nearly always'
    }

    It 'without -Wait, says nothing of a job still running' {
        $job = Start-RegionCopy $Source $Target -BytesPerSecond 4MB -Confirm:$false -ErrorVariable problems
        try {
            $job.State | Should -BeIn 'Queued', 'Running'
            $problems | Should -BeNullOrEmpty
        }
        finally { Stop-CopyJob -Id $job.Id -Confirm:$false | Out-Null }
    }
}
