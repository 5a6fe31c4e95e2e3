# Load: many copy clients (32 at the full scale), each keeping several jobs in flight for a bounded time, of mixed
# sizes, into a device of its own and through two mirrors. Every job's bytes are verified by hash as it completes
# (both legs for a mirror), the host's peak resident memory (VmHWM) is compared with its page pools plus a fixed
# overhead, and the longest wait (from Start-RegionCopy to its job seen done) is recorded.
BeforeAll {
    Import-Module "$PSScriptRoot/../pester/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/ReliabilityReport.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    $script:HostId = Use-TestHost
    $script:Scenario = 'load'
    Clear-ReliabilityRecord $Scenario 'Load: many clients, many jobs, mixed sizes and mirrors'
    $script:Clients = Select-ReliabilityScale -Quick 4 -Full 32
    $script:Seconds = Select-ReliabilityScale -Quick 20 -Full 300
    $script:InFlightPerClient = 3
    # What the host holds beyond its page pools: the .NET runtime, its code and heap, io_uring rings, RPC buffers.
    # Measured idle at about 70 MiB; the bound leaves room for the heap under load.
    $script:FixedOverhead = 192MB
}

AfterAll {
    Get-CopyClient -ErrorAction Ignore | Where-Object Name -ne 'default' | Remove-CopyClient -Force -Confirm:$false -ErrorAction Ignore
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Many clients for a bounded time' -Tag 'Reliability' {
    It 'verifies every byte, stays within its pools plus a fixed overhead, and reports the longest wait' {
        $seed = 20261204
        Write-Host "Load seed: $seed, $Clients clients, $Seconds s"
        $random = [Random]::new($seed)
        $sourceSize = 64MB
        $source = New-TestLoopDevice -Name 'load-src.img' -Size $sourceSize
        Write-RandomRegion -Path $source -Offset 0 -Length $sourceSize -Seed 170
        $sizes = @(64KB, 256KB, 1MB, 2MB, 4MB, 8MB)
        $slotSize = 8MB

        # Each client: a pool of its own size (mixed), a destination of its own with one 8 MiB slot per job in
        # flight, and a slice of each of the two mirrors (core logs, over zeroed legs) that only its jobs write.
        $pageCounts = @(64, 128, 256)
        $mirrorSize = [long](Select-ReliabilityScale -Quick 32MB -Full 64MB)
        $slice = [long]($mirrorSize / $Clients)
        $mirrors = foreach ($m in 0, 1) {
            $legs = @(0, 1 | ForEach-Object { New-TestLoopDevice -Name "load-m$m-leg$_.img" -Size $mirrorSize })
            New-MirrorDevice "load$m" $legs -NoSync -Confirm:$false | Out-Null
            [pscustomobject]@{ Name = "load$m"; Legs = $legs }
        }
        $work = for ($i = 0; $i -lt $Clients; $i++) {
            $client = New-CopyClient "load$i" -PageCount $pageCounts[$i % 3] -Confirm:$false
            [pscustomobject]@{
                Client = $client.Name; Seed = $random.Next(); Device = New-TestLoopDevice -Name "load-dst$i.img" -Size ($InFlightPerClient * $slotSize)
                SliceAt = $i * $slice
            }
        }
        $idle = Get-ProcessMemory $HostId
        $pools = (Get-CopyClient | Measure-Object PageCount -Sum).Sum * 64KB + @($mirrors).Count * 64 * 64KB

        # One runspace per client, all at once: each starts its jobs, waits for each, verifies it and starts the
        # next round until the time is up. A runspace returns one line per job: size, where, wait, verified bytes.
        $runner = {
            param($Work, $Mirrors, $Source, $SourceSize, $Sizes, $SlotSize, $Slice, $InFlight, $Seconds, $Modules)
            $ErrorActionPreference = 'Stop'
            Import-Module $Modules
            $random = [Random]::new($Work.Seed)
            # Each job in flight has a part of the client's mirror slice, in whole 64 KiB blocks.
            $part = [long][Math]::Floor($Slice / $InFlight / 64KB) * 64KB
            $clock = [Diagnostics.Stopwatch]::StartNew()
            while ($clock.Elapsed.TotalSeconds -lt $Seconds) {
                $round = for ($k = 0; $k -lt $InFlight; $k++) {
                    # One job in five goes through a mirror, into this client's slice of it.
                    $mirror = if ($random.Next(5) -eq 0) { $Mirrors[$random.Next($Mirrors.Count)] } else { $null }
                    $room = if ($mirror) { [Math]::Min($part, $SlotSize) } else { $SlotSize }
                    $fits = @($Sizes | Where-Object { $_ -le $room })
                    $length = [long]$fits[$random.Next($fits.Count)]
                    $from = [long]$random.Next([int](($SourceSize - $length) / 64KB) + 1) * 64KB
                    $base = if ($mirror) { $Work.SliceAt + $k * $part } else { $k * $SlotSize }
                    $to = $base + [long]$random.Next([int](($room - $length) / 64KB) + 1) * 64KB
                    $destination = if ($mirror) { Get-MirrorDevice $mirror.Name } else { $Work.Device }
                    $job = Start-RegionCopy $Source $destination -SourceOffset $from -DestinationOffset $to -Length $length -Client $Work.Client -Force -Confirm:$false
                    [pscustomobject]@{ Job = $job; Legs = $(if ($mirror) { $mirror.Legs } else { @($Work.Device) }); Mirror = [bool]$mirror; From = $from; To = $to; Length = $length }
                }
                foreach ($one in $round) {
                    $wait = [Diagnostics.Stopwatch]::StartNew()
                    $ended = Wait-CopyJob -Id $one.Job.Id -TimeoutSeconds 300
                    $wait.Stop()
                    if ($ended.State -ne 'Completed') { throw "job $($ended.Id) of $($Work.Client) ended $($ended.State): $($ended.Error)" }
                    $want = Get-TestSha256 $Source $one.From $one.Length
                    foreach ($leg in $one.Legs) {
                        $got = Get-TestSha256 $leg $one.To $one.Length
                        if ($got -ne $want) { throw "job $($ended.Id) of $($Work.Client): $($one.Length) bytes at $($one.To) of $leg differ from the source at $($one.From)" }
                    }
                    [pscustomobject]@{ Length = $one.Length; Mirror = $one.Mirror; Wait = $wait.Elapsed.TotalSeconds; Verified = $one.Length * $one.Legs.Count }
                }
            }
        }
        $modules = @((Resolve-Path "$PSScriptRoot/../../Kcopyd.psd1").Path, (Resolve-Path "$PSScriptRoot/../pester/TestHelpers.psm1").Path)
        $pool = [runspacefactory]::CreateRunspacePool(1, $Clients)
        $pool.Open()
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $peakDuring = 0L
        try {
            $shells = foreach ($one in $work) {
                $shell = [powershell]::Create()
                $shell.RunspacePool = $pool
                $null = $shell.AddScript($runner.ToString()).AddArgument($one).AddArgument(@($mirrors)).AddArgument($source).AddArgument($sourceSize).AddArgument($sizes).AddArgument($slotSize).AddArgument($slice).AddArgument($InFlightPerClient).AddArgument($Seconds).AddArgument($modules)
                [pscustomobject]@{ Shell = $shell; Async = $shell.BeginInvoke() }
            }
            $results = foreach ($one in $shells) {
                while (-not $one.Async.AsyncWaitHandle.WaitOne(1000)) { $peakDuring = [Math]::Max($peakDuring, (Get-ProcessMemory $HostId).Rss) }
                $one.Shell.EndInvoke($one.Async)
                $one.Shell.Streams.Error | ForEach-Object { throw "a client's runner failed: $_" }
            }
        } finally {
            foreach ($one in @($shells)) { if ($one) { $one.Shell.Dispose() } }
            $pool.Dispose()
        }
        $jobs = @($results).Count
        $mirrorJobs = @($results | Where-Object Mirror).Count
        $verified = [long]($results | Measure-Object Verified -Sum).Sum
        $longestWait = [TimeSpan]::FromSeconds(($results | Measure-Object Wait -Maximum).Maximum)
        $bySize = @{}
        foreach ($group in @($results | Group-Object Length)) { $bySize[[long]$group.Name] = $group.Count }
        $clock.Stop()
        $memory = Get-ProcessMemory $HostId
        (Get-KcopydHost).ProcessId | Should -Be $HostId
        foreach ($client in @(Get-CopyClient load*)) { $client.FreePages | Should -Be $client.PageCount -Because "client $($client.Name) is idle" }
        foreach ($mirror in $mirrors) {
            $status = Get-MirrorDevice $mirror.Name
            $status.State | Should -Be 'InSync'
            Get-TestSha256 $mirror.Legs[0] 0 $mirrorSize | Should -Be (Get-TestSha256 $mirror.Legs[1] 0 $mirrorSize)
        }
        $jobs | Should -BeGreaterThan ($Clients * $InFlightPerClient)
        $memory.Peak | Should -BeLessThan ($pools + $FixedOverhead) -Because "the host's peak ($(Format-Bytes $memory.Peak)) must stay within its pools ($(Format-Bytes $pools)) plus $(Format-Bytes $FixedOverhead)"
        Add-ReliabilityResult $Scenario "$Clients clients, $InFlightPerClient jobs in flight each, $Seconds s" ([ordered]@{
                'seed' = $seed; 'jobs' = $jobs; 'through the 2 mirrors' = $mirrorJobs
                'jobs by size' = (@($bySize.Keys | Sort-Object | ForEach-Object { "$(Format-Bytes $_) x$($bySize[$_])" }) -join ', ')
                'bytes verified' = Format-Bytes $verified; 'time' = '{0:N0} s' -f $clock.Elapsed.TotalSeconds
                'longest Wait-CopyJob' = '{0:N2} s' -f $longestWait.TotalSeconds
                'mean Wait-CopyJob' = '{0:N3} s' -f ($results | Measure-Object Wait -Average).Average
                'host memory idle' = Format-Bytes $idle.Rss; 'host RSS sampled during the load (max)' = Format-Bytes $peakDuring; 'host peak (VmHWM)' = Format-Bytes $memory.Peak
                'page pools' = Format-Bytes $pools; 'bound (pools + fixed overhead)' = "$(Format-Bytes ($pools + $FixedOverhead)) ($(Format-Bytes $FixedOverhead) overhead)"
            })
    }
}
