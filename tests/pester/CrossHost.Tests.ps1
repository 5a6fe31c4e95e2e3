# Copies between hosts: three network namespaces on this machine, each with a Kcopyd host of its own serving a
# mirror over TCP on a test network, a copy from one host's export into another host's mirror, and one copy from a
# local device into all three exports at once. Real namespaces, veth links, loop devices and processes.
Describe 'Copies between hosts in network namespaces' {
    BeforeAll {
        # Without ip(8) or the right to make a network namespace there is nothing to test here: one made and deleted says.
        $script:Unavailable = if (-not (Get-Command ip -ErrorAction Ignore)) { 'ip(8) is not installed' } else {
            $probe = "kcopyd-t-probe-$([guid]::NewGuid().ToString('n').Substring(0, 6))"
            $said = ip netns add $probe 2>&1
            if ($LASTEXITCODE) { "ip netns add does not work here: $said" } else { ip netns del $probe }
        }
        $script:Hosts = [Collections.Generic.List[object]]::new()
        if ($script:Unavailable) { return }
        Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
        Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
        Use-TestHost | Out-Null   # this namespace's host: it runs the copy into the three exports
        $script:Size = 16MB
        $script:Folder = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-crosshost-$([guid]::NewGuid().ToString('n').Substring(0, 12))"
        New-Item -ItemType Directory $script:Folder | Out-Null

        function Invoke-InNamespace {
            # Runs $Command in a pwsh inside $Node's namespace, talking to $Node's host; its last line (JSON) as an object.
            param([Parameter(Mandatory)] $Node, [Parameter(Mandatory)] [string] $Command)
            $lines = @(Invoke-KcopydInNamespace -Namespace $Node.Namespace -TimeoutSeconds 60 -Environment @{
                KCOPYD_RUNTIME_DIR = $Node.Runtime; KCOPYD_STATE_DIR = $Node.State
            } -Command "`$ProgressPreference = 'SilentlyContinue'; `$ErrorActionPreference = 'Stop'; $Command")
            if (-not $lines) { throw "The child in $($Node.Namespace) printed nothing: $Command" }
            $lines[-1] | ConvertFrom-Json
        }

        function Invoke-OnHost {
            # Runs $Script here against $Node's host: its control socket is a file, which every namespace reaches.
            param([Parameter(Mandatory)] $Node, [Parameter(Mandatory)] [scriptblock] $Script)
            $saved = $env:KCOPYD_RUNTIME_DIR, $env:KCOPYD_STATE_DIR
            $env:KCOPYD_RUNTIME_DIR, $env:KCOPYD_STATE_DIR = $Node.Runtime, $Node.State
            try { & $Script } finally { $env:KCOPYD_RUNTIME_DIR, $env:KCOPYD_STATE_DIR = $saved }
        }

        function Get-SectorsRead([string] $Device) {
            # /sys/block/loopN/stat: the third field counts 512-byte sectors read from the device since it was attached.
            [long]((Get-Content "/sys/block/$(Split-Path -Leaf $Device)/stat") -split '\s+' | Where-Object { $_ })[2]
        }

        $script:Network = New-TestNetwork -Name a, b, c, silent
        # The fourth namespace is a host that drops what it is sent, as behind a firewall: its answers have no route.
        $script:Silent = $script:Network.Namespaces[3]
        ip -n $script:Silent.Name route add blackhole "$($script:Network.Gateway)/32"
        if ($LASTEXITCODE) { throw "could not make $($script:Silent.Name) silent" }
        foreach ($namespace in $script:Network.Namespaces[0..2]) {
            $letter = $namespace.Name[-1]
            $folder = Join-Path $script:Folder $letter
            $node = [pscustomobject]@{
                Namespace = $namespace.Name; Address = $namespace.Address; Mirror = "h$letter"
                Runtime = Join-Path $folder 'run'; State = Join-Path $folder 'state'
                Legs = @(New-TestLoopDevice -Name "$letter-1.img" -Size $script:Size; New-TestLoopDevice -Name "$letter-2.img" -Size $script:Size)
                Uri = $null; HostId = $null
            }
            New-Item -ItemType Directory $folder | Out-Null
            $script:Hosts.Add($node)   # before its host starts: AfterAll stops whatever started
            # Both legs hold the same bytes from the start, so -NoSync is true; each host's differ from the others'.
            foreach ($leg in $node.Legs) { Write-RandomRegion -Path $leg -Offset 0 -Length $script:Size -Seed ([int][char]$letter) }
            $started = Invoke-InNamespace $node @"
New-MirrorDevice $($node.Mirror) '$($node.Legs[0])', '$($node.Legs[1])' -NoSync -Confirm:`$false | Out-Null
`$export = Publish-MirrorDevice $($node.Mirror) -Listen '$($node.Address):10809' -Confirm:`$false -WarningVariable warned -WarningAction SilentlyContinue
[pscustomobject]@{ Uri = `$export.Uri; Warning = "`$warned"; HostId = (Get-KcopydHost).ProcessId } | ConvertTo-Json -Compress
"@
            $node.Uri = $started.Uri
            $node.HostId = $started.HostId
            $node | Add-Member Warning $started.Warning
        }
        $script:A, $script:B, $script:C = $script:Hosts
    }

    BeforeEach { if ($script:Unavailable) { Set-ItResult -Skipped -Because $script:Unavailable } }

    AfterAll {
        if ($script:Unavailable) { return }
        foreach ($node in $script:Hosts) {
            # From here, through the host's control socket (Get-KcopydHost starts none where none runs).
            Invoke-OnHost $node {
                if (Get-KcopydHost -ErrorAction Ignore -WarningAction Ignore) {
                    Remove-MirrorDevice $node.Mirror -Force -Confirm:$false -ErrorAction Ignore
                    Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30 -WarningAction Continue
                }
            }
            # A host of this runtime directory still there goes, found by its own command line.
            $log = Join-Path $node.Runtime 'host.log'
            foreach ($id in @(pgrep -f -x ".*Kcopyd\.Host\.dll --log $([regex]::Escape($log))")) { Stop-Process -Id $id -Force -ErrorAction Ignore }
        }
        Remove-TestNetwork
        Remove-TestLoopDevices   # this namespace's host, then the legs the hosts let go of
        if ($script:Folder) { Remove-Item $script:Folder -Recurse -Force -ErrorAction Ignore }
        Remove-Module Kcopyd -ErrorAction Ignore
    }

    It 'runs each host in its own namespace, serving its mirror on its address there, with the warning that says so' {
        $rootNamespace = (Get-Item /proc/self/ns/net).LinkTarget
        foreach ($node in $script:Hosts) {
            $node.Uri | Should -Be "nbd://$($node.Address):10809/"
            $node.Warning | Should -Match 'beyond this machine, without TLS'
            $inode = stat -L -c %i "/run/netns/$($node.Namespace)"
            (Get-Item "/proc/$($node.HostId)/ns/net").LinkTarget | Should -Be "net:[$inode]" -Because "$($node.Mirror)'s host runs in $($node.Namespace)"
            (Get-Item "/proc/$($node.HostId)/ns/net").LinkTarget | Should -Not -Be $rootNamespace
        }
        @($script:Hosts.HostId | Sort-Object -Unique).Count | Should -Be 3 -Because 'each namespace has a host of its own'
    }

    It 'copies from host A''s export into host B''s mirror over TCP, run in B''s namespace: both of B''s legs hold A''s bytes' {
        $before = Get-TestSha256 $script:B.Legs[0] 0 2MB
        $after = Get-TestSha256 $script:B.Legs[0] 14MB 2MB
        $job = Invoke-InNamespace $script:B @"
`$job = Start-RegionCopy -Source '$($script:A.Uri)' -Destination $($script:B.Mirror) -SourceOffset 1MB -DestinationOffset 2MB -Length 12MB -Wait -Confirm:`$false
[pscustomobject]@{ State = "`$(`$job.State)"; Copied = `$job.BytesCopied; HostId = (Get-KcopydHost).ProcessId } | ConvertTo-Json -Compress
"@
        $job.State | Should -Be 'Completed'
        $job.Copied | Should -Be 12MB
        $job.HostId | Should -Be $script:B.HostId -Because 'B''s own host ran the copy, in B''s namespace'
        $expected = Get-TestSha256 $script:A.Legs[0] 1MB 12MB
        $expected | Should -Not -Be (Get-TestSha256 $script:B.Legs[0] 1MB 12MB) -Because 'A and B held different bytes there'
        foreach ($leg in $script:B.Legs) {
            Get-TestSha256 $leg 2MB 12MB | Should -Be $expected -Because "$leg is a leg of B's mirror"
            Get-TestSha256 $leg 0 2MB | Should -Be $before -Because 'the bytes before the region stay B''s'
            Get-TestSha256 $leg 14MB 2MB | Should -Be $after -Because 'the bytes after the region stay B''s'
        }
    }

    It 'copies one local device into the three hosts'' exports at once, reading the source once: every leg of every host holds its bytes' {
        $source = New-TestLoopDevice -Name 'source.img' -Size $script:Size
        Write-RandomRegion -Path $source -Offset 0 -Length $script:Size -Seed 1301
        $expected = Get-TestSha256 $source 0 $script:Size   # read now: the count below is the copy's reads alone
        $read = Get-SectorsRead $source
        $job = Start-RegionCopy -Source $source -Destination $script:A.Uri, $script:B.Uri, $script:C.Uri -Wait -Confirm:$false
        $readBytes = ((Get-SectorsRead $source) - $read) * 512
        Write-Host "    read from the source: $readBytes bytes for a $($script:Size)-byte copy to 3 hosts"
        $job.State | Should -Be 'Completed'
        $job.BytesCopied | Should -Be $script:Size
        $readBytes | Should -BeGreaterOrEqual $script:Size -Because 'the copy read the whole region from the device'
        $readBytes | Should -BeLessThan (1.5 * $script:Size) -Because 'one read of the source served three destinations'
        foreach ($node in $script:Hosts) {
            foreach ($leg in $node.Legs) { Get-TestSha256 $leg 0 $script:Size | Should -Be $expected -Because "$leg is a leg of $($node.Mirror)" }
        }
    }

    It 'fails quickly with NbdConnectFailed when one destination''s address does not answer, and writes none of the others' {
        $source = New-TestLoopDevice -Name 'other.img' -Size $script:Size
        Write-RandomRegion -Path $source -Offset 0 -Length $script:Size -Seed 1302
        $held = foreach ($node in $script:A, $script:B) { , @($node.Legs | ForEach-Object { Get-TestSha256 $_ 0 $script:Size }) }
        $nobody = "nbd://$($script:Network.Prefix).99:10809/"   # on the test network, no namespace has the address
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $failed = { Start-RegionCopy -Source $source -Destination $script:A.Uri, $script:B.Uri, $nobody -Wait -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId 'NbdConnectFailed*' -PassThru
        $clock.Stop()
        $failed.Exception.Message | Should -Match ([regex]::Escape("$($script:Network.Prefix).99:10809"))
        $failed.TargetObject | Should -Be $nobody
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 30 -Because 'the open is bounded, not left to TCP''s two minutes'
        $i = 0
        foreach ($node in $script:A, $script:B) {
            @($node.Legs | ForEach-Object { Get-TestSha256 $_ 0 $script:Size }) | Should -Be $held[$i++] -Because "$($node.Mirror) was not written"
        }
    }

    It 'gives up on a host that never answers (its replies dropped, as by a firewall) at the open''s bound, with NbdConnectFailed' {
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $failed = { Start-RegionCopy -Source $script:A.Legs[0] -Destination "nbd://$($script:Silent.Address):10809/" -Length 1MB -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId 'NbdConnectFailed*' -ExpectedMessage '*no answer within 10 s*' -PassThru
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 30 -Because 'the open is bounded (10 s), not left to TCP''s retries'
        $clock.Elapsed.TotalSeconds | Should -BeGreaterThan 9 -Because 'the address answered ARP: only the bound ends the wait'
    }

    It 'leaves no connection open to any export: each unpublishes without -Force, and a copy to a stopped export is refused at once' {
        foreach ($node in $script:Hosts) {
            # The server sees a client's close a moment after the client made it.
            $deadline = [DateTime]::UtcNow.AddSeconds(10)
            while ($true) {
                $refused = Invoke-OnHost $node { try { Unpublish-MirrorDevice $node.Mirror -Confirm:$false -ErrorAction Stop | Out-Null } catch { $_ } }
                if (-not $refused -or [DateTime]::UtcNow -gt $deadline) { break }
                Start-Sleep -Milliseconds 100
            }
            "$refused" | Should -BeNullOrEmpty -Because "no copy left a connection to $($node.Mirror)'s export"
            Invoke-OnHost $node { (Get-MirrorDevice $node.Mirror).Exports } | Should -BeNullOrEmpty
        }
        $clock = [Diagnostics.Stopwatch]::StartNew()
        { Start-RegionCopy -Source $script:Hosts[0].Legs[0] -Destination $script:C.Uri -Length 1MB -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId 'NbdConnectFailed*' -ExpectedMessage '*connection refused*'
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 30
    }
}
