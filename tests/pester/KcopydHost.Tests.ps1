# The Kcopyd host as its users meet it: one process that outlives every pwsh, private to root, one per runtime
# directory, stopped only when asked, and bringing its mirrors back when it starts. Real loop devices and processes.
BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Manifest = (Resolve-Path "$PSScriptRoot/../../Kcopyd.psd1").Path

    # What this file makes besides the helpers' images (other hosts' directories, a fake host's, a pwsh for uid
    # 65534) is under one folder, which AfterAll removes once the hosts and processes in it are gone.
    $script:Extra = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-hostproof-$([guid]::NewGuid().ToString('n').Substring(0, 12))"
    New-Item -ItemType Directory $script:Extra | Out-Null
    $script:OtherHosts = [Collections.Generic.List[object]]::new()
    $script:Processes = [Collections.Generic.List[Diagnostics.Process]]::new()

    function New-HostDirectory {
        # A runtime and a state directory of their own (not created: the host makes them), for another host.
        param([Parameter(Mandatory)] [string] $Name)
        $folder = Join-Path $script:Extra $Name
        New-Item -ItemType Directory $folder | Out-Null
        $directory = [pscustomobject]@{ Runtime = Join-Path $folder 'run'; State = Join-Path $folder 'state' }
        $script:OtherHosts.Add($directory)
        $directory
    }

    function Invoke-InHostDirectory {
        # Runs $Script with this session (and the processes it starts) pointed at another host's directories.
        param([Parameter(Mandatory)] $Directory, [Parameter(Mandatory)] [scriptblock] $Script)
        $saved = $env:KCOPYD_RUNTIME_DIR, $env:KCOPYD_STATE_DIR
        $env:KCOPYD_RUNTIME_DIR = $Directory.Runtime
        $env:KCOPYD_STATE_DIR = $Directory.State
        try { & $Script } finally { $env:KCOPYD_RUNTIME_DIR, $env:KCOPYD_STATE_DIR = $saved }
    }

    function Stop-OtherHost {
        # Stops the host of another directory, if one runs there, and makes sure its process is gone.
        param([Parameter(Mandatory)] $Directory)
        Invoke-InHostDirectory $Directory {
            $info = Get-KcopydHost -ErrorAction Ignore -WarningAction Ignore
            if (-not $info) { return }
            Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30 -WarningAction Continue
            if (Test-Path "/proc/$($info.ProcessId)") { Stop-Process -Id $info.ProcessId -Force }
        }
    }

    function Invoke-Child {
        # Invoke-KcopydInChild, with the child's last output line (JSON) as an object.
        param([Parameter(Mandatory)] [string] $Command, [int] $TimeoutSeconds = 120)
        $lines = @(Invoke-KcopydInChild -Command "`$ProgressPreference = 'SilentlyContinue'; `$ErrorActionPreference = 'Stop'; $Command" -TimeoutSeconds $TimeoutSeconds)
        if (-not $lines) { throw "The child printed nothing: $Command" }
        $lines[-1] | ConvertFrom-Json
    }

    function Wait-Until {
        # Polls $Condition (an event this file cannot wait on otherwise: another process's state) until it holds.
        param([Parameter(Mandatory)] [scriptblock] $Condition, [int] $TimeoutSeconds = 30, [string] $Because = 'the condition')
        $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
        while (-not (& $Condition)) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "Timed out after $TimeoutSeconds s waiting for $Because" }
            Start-Sleep -Milliseconds 50
        }
    }
}

AfterAll {
    foreach ($process in $script:Processes) {
        if (-not $process.HasExited) { $process.Kill($true); $process.WaitForExit(10000) | Out-Null }
        $process.Dispose()
    }
    foreach ($directory in $script:OtherHosts) { Stop-OtherHost $directory }
    Remove-TestLoopDevices   # stops the file's host first: its mirrors close
    Remove-Item $script:Extra -Recurse -Force -ErrorAction Ignore
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'A mirror made in one pwsh' {
    It 'is listed by a second pwsh after the first exited, waited for and written through there, and every leg holds the bytes written' {
        $legs = @(
            New-TestLoopDevice -Name 't1-a.img' -Size 16MB
            New-TestLoopDevice -Name 't1-b.img' -Size 16MB
        )
        $data = New-TestLoopDevice -Name 't1-data.img' -Size 16MB
        Write-RandomRegion -Path $data -Offset 0 -Length 16MB -Seed 1101
        $hostId = (Get-KcopydHost).ProcessId
        try {
            $first = Invoke-Child @"
`$m = New-MirrorDevice t1 '$($legs[0])', '$($legs[1])' -Confirm:`$false
[pscustomobject]@{ Pid = `$PID; Name = `$m.Name } | ConvertTo-Json -Compress
"@
            $first.Name | Should -Be 't1'
            Get-Process -Id $first.Pid -ErrorAction Ignore | Should -BeNullOrEmpty -Because 'the first pwsh has exited'

            $second = Invoke-Child @"
`$m = Get-MirrorDevice t1
`$synced = Wait-MirrorDevice t1 -TimeoutSeconds 90
`$job = Start-RegionCopy '$data' `$m -SourceOffset 2MB -DestinationOffset 4MB -Length 8MB -Wait -Confirm:`$false
[pscustomobject]@{
    Pid = `$PID; HostId = (Get-KcopydHost).ProcessId; Legs = @(`$m.Legs.Path); State = "`$(`$synced.State)"
    Job = "`$(`$job.State)"; Copied = `$job.BytesCopied
} | ConvertTo-Json -Compress
"@
            $second.Pid | Should -Not -Be $first.Pid
            $second.HostId | Should -Be $hostId -Because 'one host served both'
            $second.Legs | Should -Be $legs
            $second.State | Should -Be 'InSync'
            $second.Job | Should -Be 'Completed'
            $second.Copied | Should -Be 8MB

            $expected = Get-TestSha256 $data 2MB 8MB
            foreach ($leg in $legs) { Get-TestSha256 $leg 4MB 8MB | Should -Be $expected -Because "$leg is a leg of the mirror written" }
        } finally {
            Remove-MirrorDevice t1 -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'A copy started without -Wait' {
    It 'goes on after the pwsh that started it exited, and another pwsh sees it Completed with every byte in place' {
        $data = New-TestLoopDevice -Name 't2-data.img' -Size 16MB
        Write-RandomRegion -Path $data -Offset 0 -Length 16MB -Seed 1201
        $target = New-PausableDisk 't2-target'
        $paused = $false
        try {
            # The target hangs until resumed, so the copy is still running when its pwsh exits.
            Send-PauseControl $target.Socket 'p' | Should -Be 'P'
            $paused = $true
            $started = Invoke-Child @"
`$job = Start-RegionCopy '$data' '$($target.Device)' -Length 16MB -Confirm:`$false
[pscustomobject]@{ Pid = `$PID; Id = `$job.Id; State = "`$(`$job.State)" } | ConvertTo-Json -Compress
"@
            $started.State | Should -BeIn 'Queued', 'Running'
            Get-Process -Id $started.Pid -ErrorAction Ignore | Should -BeNullOrEmpty -Because 'the pwsh that started the copy has exited'
            Wait-Until { (Get-CopyJob -Id $started.Id).State -ne 'Queued' } -Because "job $($started.Id) to leave the queue"
            $job = Get-CopyJob -Id $started.Id
            $job.State | Should -Be 'Running'
            $job.BytesCopied | Should -BeLessThan 16MB

            Send-PauseControl $target.Socket 'r' | Should -Be 'R'
            $paused = $false
            $seen = Invoke-Child @"
Wait-CopyJob -Id $($started.Id) -TimeoutSeconds 90 | Out-Null
`$job = Get-CopyJob -Id $($started.Id)
[pscustomobject]@{ Pid = `$PID; State = "`$(`$job.State)"; Copied = `$job.BytesCopied } | ConvertTo-Json -Compress
"@
            $seen.Pid | Should -Not -Be $started.Pid
            $seen.State | Should -Be 'Completed'
            $seen.Copied | Should -Be 16MB
            Get-TestSha256 $target.Device 0 16MB | Should -Be (Get-TestSha256 $data 0 16MB)
        } finally {
            if ($paused) { Send-PauseControl $target.Socket 'r' | Out-Null }
        }
    }
}

Describe 'The files of the host' {
    It 'are private: the runtime directory 0700, its socket, host.log and lock 0600; the state directory and its mirrors directory 0700, definitions, settings and lock 0600' {
        $a = New-TestLoopDevice -Name 't3-a.img' -Size 8MB
        $b = New-TestLoopDevice -Name 't3-b.img' -Size 8MB
        try {
            New-MirrorDevice t3 $a, $b -NoSync -Confirm:$false | Out-Null
            # Saving the setting it has writes settings.json.
            Set-KcopydHost -JobHistoryMaxAge (Get-KcopydHost).JobHistoryMaxAge -Confirm:$false
            $info = Get-KcopydHost
            $run = Split-Path $info.SocketPath
            $run | Should -Be $env:KCOPYD_RUNTIME_DIR
            $info.StateDirectory | Should -Be $env:KCOPYD_STATE_DIR
            $expected = [ordered]@{
                $run                                                = 'directory 700'
                $info.SocketPath                                    = 'socket 600'
                (Join-Path $run 'host.log')                         = 'regular file 600'
                (Join-Path $run 'host.lock')                        = 'regular file 600'
                $info.StateDirectory                                = 'directory 700'
                (Join-Path $info.StateDirectory 'mirrors')          = 'directory 700'
                (Join-Path $info.StateDirectory 'mirrors/t3.json')  = 'regular file 600'
                (Join-Path $info.StateDirectory 'settings.json')    = 'regular file 600'
                (Join-Path $info.StateDirectory 'host.lock')        = 'regular file 600'
            }
            foreach ($path in $expected.Keys) {
                # Owned by root, and the type too: a link or a file in place of the socket would not do.
                (stat -c '%F %a %u' $path) -replace '^regular empty file', 'regular file' | Should -Be "$($expected[$path]) 0" -Because $path
            }
        } finally {
            Remove-MirrorDevice t3 -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'A cmdlet run as uid 65534' {
    BeforeAll {
        # uid 65534 cannot read /root, where the repository's pwsh is: it runs a copy of it (hard links where the
        # file system allows, so nothing is copied), and the module straight from the repository, which it may read.
        $script:NobodyPwsh = Join-Path $script:Extra 'pwsh'
        cp -al $PSHOME $script:NobodyPwsh 2>$null
        if ($LASTEXITCODE) { Remove-Item $script:NobodyPwsh -Recurse -Force -ErrorAction Ignore; cp -a $PSHOME $script:NobodyPwsh }
        chmod a+rx $script:Extra
        $script:NobodyHome = Join-Path $script:Extra 'nobody-home'
        New-Item -ItemType Directory $script:NobodyHome | Out-Null
        chown 65534:65534 $script:NobodyHome
        foreach ($path in (Join-Path $script:NobodyPwsh 'pwsh.dll'), $script:Manifest, (Join-Path (Split-Path $script:Manifest) 'bin/Kcopyd.dll')) {
            setpriv --reuid=65534 --regid=65534 --clear-groups test -r $path
            if ($LASTEXITCODE) { throw "uid 65534 cannot read '$path': copy the packaged module (./build.ps1 Package) somewhere it can" }
        }

        function Invoke-AsNobody {
            # Runs $Command in a pwsh of uid 65534 with the module imported; -OverrideModes gives it CAP_DAC_OVERRIDE,
            # which walks past the runtime directory's and the socket's modes, so only the host's peer check is left.
            param([Parameter(Mandatory)] [string] $Command, [switch] $OverrideModes)
            $start = [Diagnostics.ProcessStartInfo]::new('setpriv')
            $arguments = @('--reuid=65534', '--regid=65534', '--clear-groups')
            if ($OverrideModes) { $arguments += '--inh-caps=+dac_override', '--ambient-caps=+dac_override' }
            $arguments += 'dotnet', (Join-Path $script:NobodyPwsh 'pwsh.dll'), '-NoProfile', '-NonInteractive', '-Command',
                "`$ProgressPreference = 'SilentlyContinue'; Import-Module '$script:Manifest'; $Command"
            foreach ($argument in $arguments) { $start.ArgumentList.Add($argument) }
            $start.WorkingDirectory = $script:NobodyHome
            $start.Environment['HOME'] = $script:NobodyHome
            $start.Environment['DOTNET_CLI_HOME'] = $script:NobodyHome
            $start.Environment['POWERSHELL_TELEMETRY_OPTOUT'] = '1'
            $start.RedirectStandardOutput = $true
            $start.RedirectStandardError = $true
            $process = [Diagnostics.Process]::Start($start)
            try {
                $stdout = $process.StandardOutput.ReadToEndAsync()
                $stderr = $process.StandardError.ReadToEndAsync()
                if (-not $process.WaitForExit(90000)) { $process.Kill($true); throw "The pwsh of uid 65534 did not finish: $Command" }
                $process.WaitForExit()
                if ($stderr.Result) { Write-Warning "uid 65534's stderr: $($stderr.Result)" }
                @($stdout.Result -split "`n" | ForEach-Object Trim | Where-Object { $_ })
            } finally { $process.Dispose() }
        }

        # What uid 65534 tries: zero a device holding data, copy over it, and list the jobs.
        $script:Victim = New-TestLoopDevice -Name 't4-victim.img' -Size 4MB
        $script:Source = New-TestLoopDevice -Name 't4-source.img' -Size 4MB
        Write-RandomRegion -Path $script:Victim -Offset 0 -Length 4MB -Seed 1401
        $script:Attempts = @"
foreach (`$try in { Clear-Region -Path '$script:Victim' -Offset 0 -Length 1MB -Confirm:`$false },
        { Start-RegionCopy '$script:Source' '$script:Victim' -Length 1MB -Confirm:`$false },
        { Get-CopyJob }) {
    try { & `$try | Out-Null; 'answered' } catch { "`$(`$_.FullyQualifiedErrorId)|`$(`$_.Exception.Message)" }
}
"uid `$(id -u)"
"@
    }

    BeforeEach {
        $script:VictimHash = Get-TestSha256 $script:Victim 0 4MB
        $script:JobsBefore = @((Get-CopyJob).Id)
        $script:HostBefore = (Get-KcopydHost).ProcessId
    }

    It 'is refused as HostAccessDenied by the socket''s modes, and the device and the job list stay as they were' {
        $lines = @(Invoke-AsNobody $script:Attempts)
        $lines[-1] | Should -Be 'uid 65534'
        $lines.Count | Should -Be 4
        foreach ($line in $lines[0..2]) {
            $line | Should -BeLike 'HostAccessDenied,*|Permission denied on the Kcopyd host''s socket*'
            $line | Should -BeLike "*$env:KCOPYD_RUNTIME_DIR/control.sock*"
        }
        # The kernel refused it: the host never saw a connection.
        Get-Content (Join-Path $env:KCOPYD_RUNTIME_DIR 'host.log') -Raw | Should -Not -Match 'Refused a connection'
        Get-TestSha256 $script:Victim 0 4MB | Should -Be $script:VictimHash
        @((Get-CopyJob).Id) | Should -Be $script:JobsBefore
        (Get-KcopydHost).ProcessId | Should -Be $script:HostBefore
    }

    It 'is refused as HostAccessDenied by the host itself when it gets past the modes (CAP_DAC_OVERRIDE), and nothing happens either' {
        $lines = @(Invoke-AsNobody $script:Attempts -OverrideModes)
        $lines[-1] | Should -Be 'uid 65534'
        $lines.Count | Should -Be 4
        foreach ($line in $lines[0..2]) {
            $line | Should -BeLike 'HostAccessDenied,*|*closed the connection unanswered: only root and the host''s own user may drive it.'
        }
        # The host refused each of the three connections, before reading a byte.
        @(Select-String -Path (Join-Path $env:KCOPYD_RUNTIME_DIR 'host.log') -Pattern 'Refused a connection from uid 65534 ').Count | Should -Be 3
        Get-TestSha256 $script:Victim 0 4MB | Should -Be $script:VictimHash
        @((Get-CopyJob).Id) | Should -Be $script:JobsBefore
        (Get-KcopydHost).ProcessId | Should -Be $script:HostBefore
    }
}

Describe 'Two hosts with their own runtime and state directories' {
    It 'do not see each other''s mirrors or jobs, are two processes, and stopping one leaves the other running' {
        $other = New-HostDirectory 'second'
        $legsA = @(New-TestLoopDevice -Name 't5-a1.img' -Size 8MB; New-TestLoopDevice -Name 't5-a2.img' -Size 8MB)
        $legsB = @(New-TestLoopDevice -Name 't5-b1.img' -Size 8MB; New-TestLoopDevice -Name 't5-b2.img' -Size 8MB)
        $zeroA = New-TestLoopDevice -Name 't5-zero-a.img' -Size 4MB
        $zeroB = New-TestLoopDevice -Name 't5-zero-b.img' -Size 4MB
        try {
            New-MirrorDevice t5a $legsA -NoSync -Confirm:$false | Out-Null
            $jobA = Clear-Region -Path $zeroA -Offset 0 -Length 1MB -Wait -Confirm:$false
            $hostA = Get-KcopydHost
            $hostB = Invoke-InHostDirectory $other {
                New-MirrorDevice t5b $legsB -NoSync -Confirm:$false | Out-Null   # starts the second host
                $null = Clear-Region -Path $zeroB -Offset 0 -Length 2MB -Wait -Confirm:$false
                Get-KcopydHost
            }
            $hostB.ProcessId | Should -Not -Be $hostA.ProcessId
            $hostB.SocketPath | Should -Be (Join-Path $other.Runtime 'control.sock')
            $hostB.StateDirectory | Should -Be $other.State

            # Each lists its own mirror and job only.
            @((Get-MirrorDevice).Name) | Should -Be 't5a'
            Get-MirrorDevice t5b -ErrorAction SilentlyContinue -ErrorVariable missing | Should -BeNullOrEmpty
            $missing.FullyQualifiedErrorId | Should -BeLike 'MirrorNotFound*'
            @(Get-CopyJob | Where-Object { $_.Destination -contains $zeroB }) | Should -BeNullOrEmpty
            (Get-CopyJob -Id $jobA.Id).Destination | Should -Be $zeroA
            Invoke-InHostDirectory $other {
                @((Get-MirrorDevice).Name) | Should -Be 't5b'
                $jobs = @(Get-CopyJob)
                $jobs.Count | Should -Be 1
                $jobs[0].Destination | Should -Be $zeroB
                $jobs[0].BytesTotal | Should -Be 2MB
            }

            # Stopping the second leaves the first as it was.
            Invoke-InHostDirectory $other { Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 60 }
            Test-Path "/proc/$($hostB.ProcessId)" | Should -BeFalse -Because 'the second host was stopped'
            Test-Path (Join-Path $other.State 'mirrors/t5b.json') | Should -BeTrue -Because 'a stopped host keeps its definitions'
            Test-Path "/proc/$($hostA.ProcessId)" | Should -BeTrue
            (Get-KcopydHost).ProcessId | Should -Be $hostA.ProcessId
            (Get-MirrorDevice t5a).Legs.Path | Should -Be $legsA
            (Get-CopyJob -Id $jobA.Id).State | Should -Be 'Completed'
        } finally {
            Stop-OtherHost $other
            Remove-MirrorDevice t5a -Confirm:$false -ErrorAction Ignore
        }
    }
}

Describe 'Stop-KcopydHost while mirrors are open' {
    BeforeAll {
        $script:Persistent = @(New-TestLoopDevice -Name 't6-p1.img' -Size 16MB; New-TestLoopDevice -Name 't6-p2.img' -Size 16MB)
        $script:InMemory = @(New-TestLoopDevice -Name 't6-m1.img' -Size 16MB; New-TestLoopDevice -Name 't6-m2.img' -Size 16MB)
        $data = New-TestLoopDevice -Name 't6-data.img' -Size 16MB
        Write-RandomRegion -Path $data -Offset 0 -Length 16MB -Seed 1601
        $script:DataHash = Get-TestSha256 $data 0 8MB
        $log = Join-Path (Split-Path (New-TestImage -Name 't6.marker' -Size 0)) 't6.log'
        New-MirrorDevice t6p $script:Persistent -LogPath $log -Confirm:$false | Out-Null
        New-MirrorDevice t6m $script:InMemory -Confirm:$false | Out-Null
        Wait-MirrorDevice t6p, t6m -TimeoutSeconds 120 | Out-Null
        foreach ($name in 't6p', 't6m') { Start-RegionCopy $data (Get-MirrorDevice $name) -Length 8MB -Wait -Confirm:$false | Out-Null }
        $script:FirstHost = (Get-KcopydHost).ProcessId
    }

    AfterAll {
        Remove-MirrorDevice t6p, t6m -Confirm:$false -ErrorAction Ignore
    }

    It 'is refused with HostInUse, and the host goes on serving its mirrors' {
        { Stop-KcopydHost -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'HostInUse*' -ExpectedMessage '*2 open mirror(s)*'
        (Get-KcopydHost).ProcessId | Should -Be $script:FirstHost
        (Get-MirrorDevice t6p, t6m).State | Should -Be 'InSync', 'InSync'
    }

    It 'stops with -Force: the process is gone and Get-KcopydHost finds no host' {
        Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 60
        # Gone, or a zombie its parent (this pwsh, which started it) has not reaped yet: it runs no more.
        $stat = Get-Content "/proc/$script:FirstHost/stat" -ErrorAction Ignore
        if ($stat) { ($stat -split '\) ')[-1][0] | Should -Be 'Z' }
        Get-KcopydHost -ErrorAction SilentlyContinue -ErrorVariable none | Should -BeNullOrEmpty
        $none.FullyQualifiedErrorId | Should -BeLike 'HostNotRunning*'
    }

    It 'lets the next cmdlet start a new host, which assembled the mirror with a persistent log in sync at once, nothing recovered and both legs intact' {
        $mirror = Get-MirrorDevice t6p
        $newHost = Update-TestHost
        $newHost | Should -Not -Be $script:FirstHost
        $mirror.State | Should -Be 'InSync'
        $mirror.InSyncRegions | Should -Be $mirror.RegionCount
        $mirror.RecoveredRegions | Should -Be 0
        $mirror.Legs.Path | Should -Be $script:Persistent
        foreach ($leg in $script:Persistent) { Get-TestSha256 $leg 0 8MB | Should -Be $script:DataHash -Because "$leg holds what was written" }
    }

    It 'and the mirror with the in-memory log, by a full resync: every region recovered, both legs intact' {
        $status = Wait-MirrorDevice t6m -TimeoutSeconds 120
        $status.State | Should -Be 'InSync'
        $status.RegionCount | Should -BeGreaterThan 0
        $status.RecoveredRegions | Should -Be $status.RegionCount
        foreach ($leg in $script:InMemory) { Get-TestSha256 $leg 0 8MB | Should -Be $script:DataHash -Because "$leg holds what was written" }
    }
}

Describe 'A mirror definition whose leg is missing when a host starts' {
    It 'is reported by Get-KcopydHost and kept; once the leg is back, the next host assembles it' {
        $a = New-TestLoopDevice -Name 't7-a.img' -Size 16MB
        $imageB = New-TestImage -Name 't7-b.img' -Size 16MB
        $b = Add-TestLoopDevice -Image $imageB
        # The leg by a name of its own, as /dev/disk/by-id gives one: the loop device may come back under another number.
        $link = Join-Path (Split-Path $imageB) 't7-leg-b'
        New-Item -ItemType SymbolicLink -Path $link -Target $b | Out-Null
        $data = New-TestLoopDevice -Name 't7-data.img' -Size 8MB
        Write-RandomRegion -Path $data -Offset 0 -Length 8MB -Seed 1701
        $definition = $null
        try {
            New-MirrorDevice t7 $a, $link -Confirm:$false | Out-Null
            Wait-MirrorDevice t7 -TimeoutSeconds 90 | Out-Null
            Start-RegionCopy $data (Get-MirrorDevice t7) -Wait -Confirm:$false | Out-Null
            $definition = Join-Path (Get-KcopydHost).StateDirectory 'mirrors/t7.json'
            (Get-Content $definition -Raw | ConvertFrom-Json).Legs.Path | Should -Be $a, $link

            Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 60
            Remove-Item $link
            Remove-TestLoopDevice $b

            $null = Get-CopyJob   # starts a host
            $info = Get-KcopydHost -WarningVariable warned -WarningAction SilentlyContinue
            Update-TestHost | Out-Null
            $info.Mirrors | Should -Be 0
            $info.Unassembled.Name | Should -Be 't7'
            $info.Unassembled.Reason | Should -BeLike "*$link*"
            @($warned).Count | Should -Be 1
            "$($warned[0])" | Should -Be "Mirror 't7' is defined but was not assembled: Cannot find '$link'."
            Get-Content (Join-Path $env:KCOPYD_RUNTIME_DIR 'host.log') -Raw |
                Should -BeLike "*Mirror 't7' was not assembled: Cannot find '$link'. Its definition is kept.*"
            Get-MirrorDevice t7 -ErrorAction SilentlyContinue -ErrorVariable missing | Should -BeNullOrEmpty
            $missing.FullyQualifiedErrorId | Should -BeLike 'MirrorNotFound*'
            Test-Path $definition | Should -BeTrue -Because 'a definition that cannot be assembled is kept'

            # No mirror is open (a definition is not one), so the host stops without -Force.
            Stop-KcopydHost -Confirm:$false -TimeoutSeconds 60
            Test-Path "/proc/$($info.ProcessId)" | Should -BeFalse
            $b = Add-TestLoopDevice -Image $imageB
            New-Item -ItemType SymbolicLink -Path $link -Target $b | Out-Null

            $mirror = Get-MirrorDevice t7
            $again = Get-KcopydHost -WarningVariable warnedAgain -WarningAction SilentlyContinue
            Update-TestHost | Out-Null
            $again.ProcessId | Should -Not -Be $info.ProcessId
            $again.Unassembled | Should -BeNullOrEmpty
            $warnedAgain | Should -BeNullOrEmpty
            $mirror.Legs.Path | Should -Be $a, $link
            (Wait-MirrorDevice t7 -TimeoutSeconds 90).State | Should -Be 'InSync'
            $expected = Get-TestSha256 $data 0 8MB
            foreach ($leg in $a, $link) { Get-TestSha256 $leg 0 8MB | Should -Be $expected -Because "$leg holds what was written" }
        } finally {
            Remove-MirrorDevice t7 -Confirm:$false -ErrorAction Ignore
            # Left by a failure above while the leg was missing: the next host must not meet it.
            if ($definition -and (Test-Path $definition)) { Remove-Item $definition }
        }
    }
}

Describe 'The job history' {
    It 'keeps the newest finished jobs up to -JobHistoryCount, loses one to Remove-CopyJob -Id, and keeps a running job Remove-CopyJob refuses' {
        $disk = New-TestLoopDevice -Name 't8.img' -Size 4MB
        $hung = New-PausableDisk 't8-hung' -Size '4M'
        $paused = $false
        try {
            (Set-KcopydHost -JobHistoryCount 5 -PassThru -Confirm:$false).JobHistoryCount | Should -Be 5
            (Get-Content (Join-Path $env:KCOPYD_STATE_DIR 'settings.json') -Raw | ConvertFrom-Json).JobHistoryCount | Should -Be 5
            $ids = foreach ($i in 0..11) {
                $job = Clear-Region -Path $disk -Offset ($i * 64KB) -Length 64KB -Wait -Confirm:$false
                $job.State | Should -Be 'Completed'
                $job.Id
            }
            @($ids | Sort-Object -Unique).Count | Should -Be 12
            $listed = @(Get-CopyJob)
            $listed.State | Should -Be (@('Completed') * 5)
            $listed.Id | Should -Be $ids[7..11] -Because 'the newest five stay'
            (Get-KcopydHost).Jobs | Should -Be 5

            Remove-CopyJob -Id $ids[9] -Confirm:$false
            @((Get-CopyJob).Id) | Should -Be $ids[7, 8, 10, 11]
            Get-CopyJob -Id $ids[9] -ErrorAction SilentlyContinue -ErrorVariable gone | Should -BeNullOrEmpty
            $gone.FullyQualifiedErrorId | Should -BeLike 'CopyJobNotFound*'

            Send-PauseControl $hung.Socket 'p' | Should -Be 'P'
            $paused = $true
            $running = Clear-Region -Path $hung.Device -Offset 0 -Length 1MB -Confirm:$false
            Wait-Until { (Get-CopyJob -Id $running.Id).State -eq 'Running' } -Because "job $($running.Id) to run"
            { Remove-CopyJob -Id $running.Id -Confirm:$false -ErrorAction Stop } |
                Should -Throw -ErrorId 'CopyJobRunning*' -ExpectedMessage "*Copy job $($running.Id) is Running*"
            (Get-CopyJob -Id $running.Id).State | Should -Be 'Running'

            Send-PauseControl $hung.Socket 'r' | Should -Be 'R'
            $paused = $false
            (Wait-CopyJob -Id $running.Id -TimeoutSeconds 60).State | Should -Be 'Completed'
            Remove-CopyJob -Id $running.Id -Confirm:$false
            @((Get-CopyJob).Id) | Should -Not -Contain $running.Id
        } finally {
            if ($paused) { Send-PauseControl $hung.Socket 'r' | Out-Null }
            Set-KcopydHost -JobHistoryCount 1000 -Confirm:$false
        }
    }

    # A job followed by -Wait stays listed until the cmdlet has seen it end, whatever the history's bounds.
    It 'lets -Wait report a job Completed even with -JobHistoryCount 0' {
        $disk = New-TestLoopDevice -Name 't8-zero.img' -Size 4MB
        try {
            Set-KcopydHost -JobHistoryCount 0 -Confirm:$false
            (Clear-Region -Path $disk -Offset 0 -Length 64KB -Wait -Confirm:$false).State | Should -Be 'Completed'
        } finally {
            Set-KcopydHost -JobHistoryCount 1000 -Confirm:$false
        }
    }
}

Describe 'Ctrl+C during Start-RegionCopy -Wait' {
    BeforeAll {
        # A host whose UI records what is written to it: the cmdlet writes its warning there, the pipeline being stopped.
        Add-Type -TypeDefinition @'
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Security;

namespace KcopydHostTests
{
    public sealed class RecordingHost : PSHost
    {
        private readonly Guid _id = Guid.NewGuid();
        public RecordingUserInterface Recorded { get; } = new RecordingUserInterface();
        public override CultureInfo CurrentCulture => CultureInfo.CurrentCulture;
        public override CultureInfo CurrentUICulture => CultureInfo.CurrentUICulture;
        public override Guid InstanceId => _id;
        public override string Name => "RecordingHost";
        public override PSHostUserInterface UI => Recorded;
        public override Version Version => new Version(1, 0);
        public override void EnterNestedPrompt() => throw new NotSupportedException();
        public override void ExitNestedPrompt() => throw new NotSupportedException();
        public override void NotifyBeginApplication() { }
        public override void NotifyEndApplication() { }
        public override void SetShouldExit(int exitCode) { }
    }

    public sealed class RecordingUserInterface : PSHostUserInterface
    {
        public ConcurrentQueue<string> Warnings { get; } = new ConcurrentQueue<string>();
        public ConcurrentQueue<string> Lines { get; } = new ConcurrentQueue<string>();
        public override PSHostRawUserInterface RawUI => null;
        public override Dictionary<string, PSObject> Prompt(string caption, string message, Collection<FieldDescription> descriptions) => throw new NotSupportedException();
        public override int PromptForChoice(string caption, string message, Collection<ChoiceDescription> choices, int defaultChoice) => throw new NotSupportedException();
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) => throw new NotSupportedException();
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName, PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options) => throw new NotSupportedException();
        public override string ReadLine() => throw new NotSupportedException();
        public override SecureString ReadLineAsSecureString() => throw new NotSupportedException();
        public override void Write(string value) => Lines.Enqueue(value);
        public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) => Lines.Enqueue(value);
        public override void WriteLine(string value) => Lines.Enqueue(value);
        public override void WriteErrorLine(string value) => Lines.Enqueue(value);
        public override void WriteDebugLine(string message) { }
        public override void WriteVerboseLine(string message) { }
        public override void WriteProgress(long sourceId, ProgressRecord record) { }
        public override void WriteWarningLine(string message) => Warnings.Enqueue(message);
    }
}
'@
    }

    # With progress silenced, -Wait asks the host once per 10 s instead of four times a second: Ctrl+C must still be quick.
    It 'gives the shell back within seconds, the job goes on to Completed, and the warning names the job, Wait-CopyJob and Stop-CopyJob (progress <Progress>)' -ForEach @(
        @{ Progress = 'Continue' }, @{ Progress = 'SilentlyContinue' }
    ) {
        $data = New-TestLoopDevice -Name "t9-data-$Progress.img" -Size 8MB
        Write-RandomRegion -Path $data -Offset 0 -Length 8MB -Seed 1901
        $target = New-PausableDisk "t9-target-$Progress" -Size '8M'
        $paused = $false
        $shell = $null
        try {
            Send-PauseControl $target.Socket 'p' | Should -Be 'P'
            $paused = $true
            $before = @((Get-CopyJob).Id)
            $recording = [KcopydHostTests.RecordingHost]::new()
            $state = [Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
            $state.ImportPSModule($script:Manifest)
            $runspace = [runspacefactory]::CreateRunspace($recording, $state)
            $runspace.Open()
            $shell = [powershell]::Create()
            $shell.Runspace = $runspace
            $null = $shell.AddScript("`$ProgressPreference = '$Progress'; Start-RegionCopy '$data' '$($target.Device)' -Length 8MB -Wait -Confirm:`$false")
            $async = $shell.BeginInvoke()
            Wait-Until { Get-CopyJob | Where-Object { $_.Id -notin $before -and $_.State -eq 'Running' } } -Because 'the copy to run'
            $job = Get-CopyJob | Where-Object { $_.Id -notin $before }
            @($job).Count | Should -Be 1

            $clock = [Diagnostics.Stopwatch]::StartNew()
            $stop = $shell.BeginStop($null, $null)   # what Ctrl+C does
            $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(15)) | Should -BeTrue -Because 'Ctrl+C must give the shell back'
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
            $async.IsCompleted | Should -BeTrue
            $shell.InvocationStateInfo.State | Should -Be 'Stopped'

            # The waiting stopped, not the job.
            (Get-CopyJob -Id $job.Id).State | Should -Be 'Running'
            # Written to the host's UI (Host.UI.WriteWarningLine), which PowerShell also keeps in the Warning stream.
            $named = "Stopped waiting for copy job $($job.Id); it goes on in the Kcopyd host. Wait-CopyJob -Id $($job.Id) waits again, Stop-CopyJob -Id $($job.Id) stops it."
            @($recording.Recorded.Warnings) | Should -Be $named
            @($shell.Streams.Warning | ForEach-Object Message) | Should -Be $named

            Send-PauseControl $target.Socket 'r' | Should -Be 'R'
            $paused = $false
            (Wait-CopyJob -Id $job.Id -TimeoutSeconds 60).State | Should -Be 'Completed'
            Get-TestSha256 $target.Device 0 8MB | Should -Be (Get-TestSha256 $data 0 8MB)
        } finally {
            if ($paused) { Send-PauseControl $target.Socket 'r' | Out-Null }
            if ($shell) { $shell.Dispose() }
            if ($runspace) { $runspace.Dispose() }
        }
    }
}

Describe 'Start-RegionCopy -Wait and Wait-CopyJob with progress silenced' {
    # They wait in one long call each 10 s: the answer must come when the job ends, not at the end of that call.
    It 'returns within seconds of the job ending, not at the end of its long call (<Command>)' -ForEach @(@{ Command = 'Start-RegionCopy -Wait' }, @{ Command = 'Wait-CopyJob' }) {
        $name = $Command -replace '\W', ''
        $data = New-TestLoopDevice -Name "t13-data-$name.img" -Size 4MB
        Write-RandomRegion -Path $data -Offset 0 -Length 4MB -Seed 1913
        $target = New-PausableDisk "t13-target-$name" -Size '4M'
        $paused = $false
        $shell = $null
        try {
            Send-PauseControl $target.Socket 'p' | Should -Be 'P'
            $paused = $true
            $before = @((Get-CopyJob).Id)
            $shell = [powershell]::Create()
            $script = if ($Command -eq 'Wait-CopyJob') {
                "`$ProgressPreference = 'SilentlyContinue'; Import-Module '$($script:Manifest)'; `$j = Start-RegionCopy '$data' '$($target.Device)' -Confirm:`$false; Wait-CopyJob -Id `$j.Id"
            } else {
                "`$ProgressPreference = 'SilentlyContinue'; Import-Module '$($script:Manifest)'; Start-RegionCopy '$data' '$($target.Device)' -Wait -Confirm:`$false"
            }
            $null = $shell.AddScript($script)
            $async = $shell.BeginInvoke()
            Wait-Until { Get-CopyJob | Where-Object { $_.Id -notin $before -and $_.State -eq 'Running' } } -Because 'the copy to run'
            Start-Sleep -Milliseconds 500   # the wait is inside its long call now
            Send-PauseControl $target.Socket 'r' | Should -Be 'R'
            $paused = $false
            $clock = [Diagnostics.Stopwatch]::StartNew()
            $async.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(30)) | Should -BeTrue
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 3 -Because 'the host answers a wait when its job ends'
            $result = @($shell.EndInvoke($async))
            $result[-1].State | Should -Be 'Completed'
            Get-TestSha256 $target.Device 0 4MB | Should -Be (Get-TestSha256 $data 0 4MB)
        } finally {
            if ($paused) { Send-PauseControl $target.Socket 'r' | Out-Null }
            if ($shell) { $shell.Dispose() }
        }
    }
}

Describe 'A host killed during Start-RegionCopy -Wait' {
    # The lost host is named as such, with its ErrorId, also from inside -Wait.
    It 'is reported as HostConnectionLost, and the next cmdlet starts a host again' {
        $data = New-TestLoopDevice -Name 't12-data.img' -Size 4MB
        $target = New-PausableDisk 't12-target' -Size '4M'
        $paused = $false
        $shell = $null
        try {
            Send-PauseControl $target.Socket 'p' | Should -Be 'P'
            $paused = $true
            $killed = (Get-KcopydHost).ProcessId
            $before = @((Get-CopyJob).Id)
            $state = [Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
            $state.ImportPSModule($script:Manifest)
            $shell = [powershell]::Create($state)
            $null = $shell.AddScript("try { Start-RegionCopy '$data' '$($target.Device)' -Wait -Confirm:`$false -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId }")
            $async = $shell.BeginInvoke()
            Wait-Until { Get-CopyJob | Where-Object { $_.Id -notin $before -and $_.State -eq 'Running' } } -Because 'the copy to run'
            Stop-Process -Id $killed -Force
            # The killed host's I/O on the paused disk must end before its process does.
            Send-PauseControl $target.Socket 'r' | Should -Be 'R'
            $paused = $false
            $async.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(30)) | Should -BeTrue
            @($shell.EndInvoke($async)) | Should -BeLike 'HostConnectionLost,*'
            $null = Get-CopyJob
            Update-TestHost | Should -Not -Be $killed
        } finally {
            if ($paused) { Send-PauseControl $target.Socket 'r' | Out-Null }
            if ($shell) { $shell.Dispose() }
        }
    }
}

Describe 'A host of another protocol version' {
    BeforeAll {
        $folder = Join-Path $script:Extra 'fake'
        $script:FakeRuntime = Join-Path $folder 'run'
        $script:FakeDirectory = [pscustomobject]@{ Runtime = $script:FakeRuntime; State = Join-Path $folder 'state' }
        New-Item -ItemType Directory $script:FakeRuntime | Out-Null
        chmod 700 $script:FakeRuntime
        $script:Calls = Join-Path $folder 'calls'
        # Header-delimited JSON-RPC by hand: GetHost answers protocol 99; every method asked for is noted in Calls.
        $server = @'
import json, os, socket, sys
path, calls = sys.argv[1], sys.argv[2]
listener = socket.socket(socket.AF_UNIX)
listener.bind(path)
os.chmod(path, 0o600)
listener.listen(8)
print('listening', flush=True)
while True:
    connection, _ = listener.accept()
    with connection:
        buffered = b''
        while True:
            while b'\r\n\r\n' not in buffered:
                chunk = connection.recv(65536)
                if not chunk: break
                buffered += chunk
            if b'\r\n\r\n' not in buffered: break
            head, buffered = buffered.split(b'\r\n\r\n', 1)
            length = int([line.split(b':', 1)[1] for line in head.split(b'\r\n') if line.lower().startswith(b'content-length:')][0])
            while len(buffered) < length:
                chunk = connection.recv(65536)
                if not chunk: break
                buffered += chunk
            body, buffered = buffered[:length], buffered[length:]
            message = json.loads(body)
            with open(calls, 'a') as f: f.write(message.get('method', '?') + '\n')
            if 'id' not in message: continue
            if message.get('method') == 'GetHost':
                answer = {'jsonrpc': '2.0', 'id': message['id'], 'result': {'ProtocolVersion': 99, 'ProcessId': os.getpid(), 'Version': '9.9.9'}}
            elif message.get('method') == 'StopHost':
                answer = {'jsonrpc': '2.0', 'id': message['id'], 'result': True}
            else:
                answer = {'jsonrpc': '2.0', 'id': message['id'], 'error': {'code': -32601, 'message': 'no such method in protocol 99'}}
            out = json.dumps(answer).encode()
            connection.sendall(b'Content-Length: %d\r\n\r\n' % len(out) + out)
'@
        $start = [Diagnostics.ProcessStartInfo]::new('/usr/bin/python3')
        foreach ($argument in '-c', $server, (Join-Path $script:FakeRuntime 'control.sock'), $script:Calls) { $start.ArgumentList.Add($argument) }
        $start.RedirectStandardOutput = $true
        $script:Python = [Diagnostics.Process]::Start($start)
        $script:Processes.Add($script:Python)
        $ready = $script:Python.StandardOutput.ReadLineAsync()
        if (-not $ready.Wait([TimeSpan]::FromSeconds(20)) -or $ready.Result -ne 'listening') { throw 'The fake host did not listen' }
    }

    BeforeEach {
        Remove-Item $script:Calls -ErrorAction Ignore
    }

    It 'is refused as HostVersionMismatch, named with both versions, after GetHost alone, and no host of ours is started beside it' {
        Invoke-InHostDirectory $script:FakeDirectory {
            foreach ($command in { Get-CopyJob }, { Get-KcopydHost }, { Get-MirrorDevice }) {
                $command | Should -Throw -ErrorId 'HostVersionMismatch*' -ExpectedMessage "*(pid $($script:Python.Id), version 9.9.9) speaks protocol 99, this module protocol $([Kcopyd.Protocol.ControlProtocol]::Version).*"
            }
        }
        @(Get-Content $script:Calls) | Should -Be 'GetHost', 'GetHost', 'GetHost' -Because 'a client asks GetHost first and nothing after a mismatch'
        @(Get-ChildItem $script:FakeRuntime -Force).Name | Should -Be 'control.sock' -Because 'no host of ours was started there (it would have written host.log)'
        Test-Path $script:FakeDirectory.State | Should -BeFalse
        $script:Python.HasExited | Should -BeFalse
    }

    # StopHost is the same in every protocol version, so Stop-KcopydHost stops a host it cannot otherwise speak to.
    It 'is sent StopHost by Stop-KcopydHost -Force, as the mismatch error advises' {
        Invoke-InHostDirectory $script:FakeDirectory { Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 1 -WarningAction SilentlyContinue }
        @(Get-Content $script:Calls) | Should -Contain 'StopHost'
    }
}

Describe 'The pwsh that started the host' {
    It 'leaves the host running when it exits: a session leader with no terminal, whose stdout and stderr are host.log and stdin /dev/null' {
        $directory = New-HostDirectory 'detached'
        Invoke-InHostDirectory $directory {
            $child = Invoke-Child '$null = Get-CopyJob; [pscustomobject]@{ Pid = $PID; HostId = (Get-KcopydHost).ProcessId } | ConvertTo-Json -Compress'
            Get-Process -Id $child.Pid -ErrorAction Ignore | Should -BeNullOrEmpty -Because 'the pwsh that started the host has exited'
            $hostId = $child.HostId
            Test-Path "/proc/$hostId" | Should -BeTrue -Because 'the host outlives the pwsh that started it'
            (Get-Content "/proc/$hostId/cmdline" -Raw) -replace "`0", ' ' | Should -BeLike '*Kcopyd.Host.dll --log *'
            (Get-KcopydHost).ProcessId | Should -Be $hostId
            $sid, $tty = -split (ps -o sid=,tty= -p $hostId)
            $sid | Should -Be "$hostId" -Because 'the host leads a session of its own'
            $tty | Should -Be '?' -Because 'the host has no controlling terminal'
            $log = Join-Path $directory.Runtime 'host.log'
            readlink "/proc/$hostId/fd/1" | Should -Be $log
            readlink "/proc/$hostId/fd/2" | Should -Be $log
            readlink "/proc/$hostId/fd/0" | Should -Be '/dev/null'
            Get-Content $log -Raw | Should -Match "Kcopyd host $hostId listening on"
        }
    }
}
