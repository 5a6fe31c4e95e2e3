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

Describe 'Many clients for a bounded time' {
    It 'verifies every byte, stays within its pools plus a fixed overhead, and reports the longest wait' {
        $seed = 20261204
        Write-Host "Load seed: $seed, $Clients clients, $Seconds s"
        $random = [Random]::new($seed)
        $sourceSize = 64MB
        $source = New-TestLoopDevice -Name 'load-src.img' -Size $sourceSize
        Write-RandomRegion -Path $source -Offset 0 -Length $sourceSize -Seed 170
        $sizes = @(64KB, 256KB, 1MB, 2MB, 4MB, 8MB)
        $slotSize = 8MB
        # Hashes of source ranges, so a job's check hashes only its destination.
        $sourceHash = @{}
        $hashOfSource = { param($offset, $length) $key = "$offset+$length"; if (-not $sourceHash.ContainsKey($key)) { $sourceHash[$key] = Get-TestSha256 $source $offset $length }; $sourceHash[$key] }

        # Each client: a pool of its own size (mixed), a destination of its own in 8 MiB slots, one job per slot.
        $targets = [Collections.Generic.List[object]]::new()
        $pageCounts = @(64, 128, 256)
        for ($i = 0; $i -lt $Clients; $i++) {
            $client = New-CopyClient "load$i" -PageCount $pageCounts[$i % 3] -Confirm:$false
            $device = New-TestLoopDevice -Name "load-dst$i.img" -Size (4 * $slotSize)
            $targets.Add([pscustomobject]@{ Client = $client.Name; Kind = 'device'; Path = $device; Legs = @($device); Free = [Collections.Generic.Queue[long]]::new([long[]]@(0, 1, 2, 3 | ForEach-Object { $_ * $slotSize })) })
        }
        # Two mirrors (core logs) over fresh zeroed legs, their slots shared by every client.
        $mirrors = foreach ($m in 0, 1) {
            $legs = @(0, 1 | ForEach-Object { New-TestLoopDevice -Name "load-m$m-leg$_.img" -Size (4 * $slotSize) })
            New-MirrorDevice "load$m" $legs -NoSync -Confirm:$false | Out-Null
            [pscustomobject]@{ Client = $null; Kind = 'mirror'; Path = "load$m"; Legs = $legs; Free = [Collections.Generic.Queue[long]]::new([long[]]@(0, 1, 2, 3 | ForEach-Object { $_ * $slotSize })) }
        }
        $idle = Get-ProcessMemory $HostId
        $pools = (Get-CopyClient | Measure-Object PageCount -Sum).Sum * 64KB + @($mirrors).Count * 64 * 64KB

        $inFlight = [Collections.Generic.Queue[object]]::new()
        $jobs = 0; $verified = 0; $mirrorJobs = 0; $longestWait = [TimeSpan]::Zero; $longestJob = $null; $bySize = @{}
        $submit = {
            param($clientIndex)
            $own = $targets[$clientIndex]
            # One job in five goes through a mirror, when a mirror slot is free.
            $target = if ($random.Next(5) -eq 0) { @($mirrors | Where-Object { $_.Free.Count -gt 0 })[0] } else { $null }
            if (-not $target) { $target = $own }
            if ($target.Free.Count -eq 0) { return $false }
            $slot = $target.Free.Dequeue()
            $length = [long]$sizes[$random.Next($sizes.Count)]
            $from = [long]$random.Next([int](($sourceSize - $length) / 64KB) + 1) * 64KB
            $to = $slot + [long]$random.Next([int](($slotSize - $length) / 64KB) + 1) * 64KB
            $destination = if ($target.Kind -eq 'mirror') { Get-MirrorDevice $target.Path } else { $target.Path }
            $job = Start-RegionCopy $source $destination -SourceOffset $from -DestinationOffset $to -Length $length -Client $own.Client -Force -Confirm:$false
            $inFlight.Enqueue([pscustomobject]@{ Job = $job; Client = $clientIndex; Target = $target; Slot = $slot; From = $from; To = $to; Length = $length; Sent = [DateTime]::Now; Clock = [Diagnostics.Stopwatch]::StartNew() })
            $true
        }

        $clock = [Diagnostics.Stopwatch]::StartNew()
        for ($i = 0; $i -lt $Clients; $i++) { foreach ($n in 1..$InFlightPerClient) { & $submit $i | Out-Null } }
        while ($inFlight.Count -gt 0) {
            $next = $inFlight.Dequeue()
            $ended = Wait-CopyJob -Id $next.Job.Id -TimeoutSeconds 300
            $next.Clock.Stop()
            $ended.State | Should -Be 'Completed' -Because "job $($ended.Id) of client load$($next.Client): $($ended.Error)"
            if ($next.Clock.Elapsed -gt $longestWait) { $longestWait = $next.Clock.Elapsed }
            $took = $ended.EndTime - $next.Sent
            if (-not $longestJob -or $took -gt $longestJob.Took) { $longestJob = [pscustomobject]@{ Took = $took; Length = $next.Length } }
            $want = & $hashOfSource $next.From $next.Length
            foreach ($leg in $next.Target.Legs) {
                Get-TestSha256 $leg $next.To $next.Length | Should -Be $want -Because "job $($ended.Id) wrote $($next.Length) bytes at $($next.To) of $leg"
                $verified += $next.Length
            }
            $jobs++
            if ($next.Target.Kind -eq 'mirror') { $mirrorJobs++ }
            $bySize[$next.Length] = 1 + [int]$bySize[$next.Length]
            $next.Target.Free.Enqueue($next.Slot)
            if ($clock.Elapsed.TotalSeconds -lt $Seconds) {
                # The client whose job ended starts another (and any client short of its jobs, as slots come free).
                & $submit $next.Client | Out-Null
                $short = @($inFlight | Group-Object Client -NoElement | Where-Object Count -lt $InFlightPerClient | ForEach-Object { [int]$_.Name })
                foreach ($c in $short) { & $submit $c | Out-Null }
            }
        }
        $clock.Stop()
        $memory = Get-ProcessMemory $HostId
        (Get-KcopydHost).ProcessId | Should -Be $HostId
        foreach ($client in @(Get-CopyClient load*)) { $client.FreePages | Should -Be $client.PageCount -Because "client $($client.Name) is idle" }
        foreach ($mirror in $mirrors) {
            $status = Get-MirrorDevice $mirror.Path
            $status.State | Should -Be 'InSync'
            Get-TestSha256 $mirror.Legs[0] 0 (4 * $slotSize) | Should -Be (Get-TestSha256 $mirror.Legs[1] 0 (4 * $slotSize))
        }
        $jobs | Should -BeGreaterThan ($Clients * $InFlightPerClient)
        $memory.Peak | Should -BeLessThan ($pools + $FixedOverhead) -Because "the host's peak ($(Format-Bytes $memory.Peak)) must stay within its pools ($(Format-Bytes $pools)) plus $(Format-Bytes $FixedOverhead)"
        Add-ReliabilityResult $Scenario "$Clients clients, $InFlightPerClient jobs in flight each, $Seconds s" ([ordered]@{
                'seed' = $seed; 'jobs' = $jobs; 'through the 2 mirrors' = $mirrorJobs
                'jobs by size' = (@($bySize.Keys | Sort-Object | ForEach-Object { "$(Format-Bytes $_) x$($bySize[$_])" }) -join ', ')
                'bytes verified' = Format-Bytes $verified; 'time' = '{0:N0} s' -f $clock.Elapsed.TotalSeconds
                'longest Wait-CopyJob' = '{0:N2} s' -f $longestWait.TotalSeconds
                'longest job, sent to done' = '{0:N2} s ({1})' -f $longestJob.Took.TotalSeconds, (Format-Bytes $longestJob.Length)
                'host memory idle' = Format-Bytes $idle.Rss; 'host peak (VmHWM)' = Format-Bytes $memory.Peak
                'page pools' = Format-Bytes $pools; 'bound (pools + fixed overhead)' = "$(Format-Bytes ($pools + $FixedOverhead)) ($(Format-Bytes $FixedOverhead) overhead)"
            })
    }
}
