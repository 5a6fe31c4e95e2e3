BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null

    # What Tab offers at the end of $Line, as PowerShell's own completion finds it.
    function Get-Completion([string] $Line) { @((TabExpansion2 -inputScript $Line -cursorColumn $Line.Length).CompletionMatches) }

    function Get-LoopSize([string] $Device) { [long](Get-Content "/sys/block/$(Split-Path $Device -Leaf)/size" -ErrorAction Ignore) }

    # A runtime directory no host has ever used, and whether a host of it runs now (found by its command line).
    function New-EmptyRuntimeDirectory { Join-Path ([IO.Path]::GetTempPath()) "kcopyd-nohost-$([guid]::NewGuid().ToString('n').Substring(0, 12))" }
    function Test-HostOf([string] $RuntimeDirectory) { [bool]@(pgrep -f -- "--log $([regex]::Escape("$RuntimeDirectory/host.log"))") }
}

AfterAll {
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Completion of names and ids from the host' {
    BeforeAll {
        $script:legs = @(New-TestLoopDevice -Name 'cmp-a.img' -Size 16MB; New-TestLoopDevice -Name 'cmp-b.img' -Size 16MB)
        Write-RandomRegion -Path $script:legs[0] -Offset 0 -Length 16MB -Seed 41
        New-MirrorDevice -Name cmpdata -Leg $script:legs -Confirm:$false | Out-Null
        (Wait-MirrorDevice -Name cmpdata -TimeoutSeconds 120).State | Should -Be 'InSync'
        New-CopyClient cmpclient | Out-Null
    }

    AfterAll {
        Remove-MirrorDevice -Name cmpdata -Confirm:$false -ErrorAction Continue
        Remove-CopyClient cmpclient -Force -Confirm:$false -ErrorAction Continue
    }

    It 'completes mirror names for -Name of the mirror cmdlets and for device parameters' {
        (Get-Completion 'Get-MirrorDevice -Name cmp').CompletionText | Should -Be 'cmpdata'
        $mirror = Get-Completion 'Wait-MirrorDevice -Name CMP'
        $mirror.CompletionText | Should -Be 'cmpdata' -Because 'names match regardless of case, as Get-MirrorDevice finds them'
        $mirror.ToolTip | Should -BeLike 'mirror device cmpdata*InSync*'
        (Get-Completion 'Remove-MirrorDevice cmp').CompletionText | Should -Be 'cmpdata' -Because 'a positional -Name completes too'
        (Get-Completion 'Start-RegionCopy -Source /dev/null -Destination cmp').CompletionText | Should -Contain 'cmpdata'
        (Get-Completion 'New-MirrorDevice top -Leg cmp').CompletionText | Should -Contain 'cmpdata'
        Get-Completion 'Get-MirrorDevice -Name zz' | Should -BeNullOrEmpty
    }

    It 'completes the legs of the named mirror for -Leg of Remove-MirrorLeg and -ReplaceLeg' {
        (Get-Completion 'Remove-MirrorLeg -Name cmpdata -Leg ').CompletionText | Should -Be $script:legs
        (Get-Completion 'Repair-MirrorDevice -Name cmpdata -ReplaceLeg ').CompletionText | Should -Be $script:legs
    }

    It 'completes client names for -Client and -Name of the client cmdlets, not file names' {
        (Get-Completion 'Get-CopyClient -Name cmp').CompletionText | Should -Be 'cmpclient'
        (Get-Completion 'Set-CopyClient cmp').CompletionText | Should -Be 'cmpclient'
        (Get-Completion 'Start-RegionCopy -Client cmp').CompletionText | Should -Be 'cmpclient'
        (Get-Completion 'Clear-Region -Client ').CompletionText | Should -Be @('default', 'cmpclient')
        (Get-Completion 'Clear-Region -Client ')[0].ToolTip | Should -BeLike 'CopyClient default*'
    }

    It 'completes job ids with what each job does as the tooltip, running ones for Stop-CopyJob and finished ones for Remove-CopyJob' {
        $target = New-TestLoopDevice -Name 'cmp-target.img' -Size 16MB
        $slowTarget = New-TestLoopDevice -Name 'cmp-slow.img' -Size 16MB
        $done = Start-RegionCopy -Source $script:legs[0] -Destination $target -Length 1MB -Wait -Confirm:$false
        $running = Start-RegionCopy -Source $script:legs[0] -Destination $slowTarget -BytesPerSecond 1MB -Confirm:$false
        try {
            $all = Get-Completion 'Get-CopyJob -Id '
            $all.CompletionText | Should -Contain "$($done.Id)"
            $all.CompletionText | Should -Contain "$($running.Id)"
            ($all | Where-Object CompletionText -eq "$($done.Id)").ToolTip | Should -Be "$($done.Id) Completed $($script:legs[0]) -> $target"
            @($all | Where-Object { [long]$_.CompletionText -lt 0 }) | Should -BeNullOrEmpty -Because 'internal jobs are offered only with -IncludeInternal'
            (Get-Completion "Wait-CopyJob -Id $($running.Id)").CompletionText | Should -Contain "$($running.Id)"

            $stoppable = (Get-Completion 'Stop-CopyJob -Id ').CompletionText
            $stoppable | Should -Contain "$($running.Id)"
            $stoppable | Should -Not -Contain "$($done.Id)"
            $removable = (Get-Completion 'Remove-CopyJob -Id ').CompletionText
            $removable | Should -Contain "$($done.Id)"
            $removable | Should -Not -Contain "$($running.Id)"

            $internal = @(Get-Completion 'Get-CopyJob -IncludeInternal -Id ' | Where-Object CompletionText -like "'-*'")
            $internal.Count | Should -Be 32 -Because "the mirror's resync copied its 32 regions, and a negative id is quoted"
            $internal[0].ToolTip | Should -BeLike "* Completed $($script:legs[0]) -> $($script:legs[1])"
        } finally {
            Stop-CopyJob -Id $running.Id -Confirm:$false
            Wait-CopyJob -Id $running.Id -TimeoutSeconds 30 | Out-Null
        }
    }
}

Describe 'Completion of device paths' {
    It '-Source /dev/loo offers attached loop devices only: not an unattached node, nor /dev/loop-control' {
        $attached = New-TestLoopDevice -Name 'cmp-attached.img' -Size 16MB
        foreach ($attempt in 1..3) {
            # Other tests attach and detach loop devices all the time: an unattached node is one before and after.
            $unattached = Get-ChildItem /dev -Filter 'loop*' | Where-Object Name -match '^loop\d+$' |
                Where-Object { (Get-LoopSize $_.FullName) -eq 0 } | Select-Object -First 1 -ExpandProperty FullName
            $unattached | Should -Not -BeNullOrEmpty -Because 'the machine has loop nodes without a backing file'
            $offered = Get-Completion 'Start-RegionCopy -Source /dev/loo'
            if ((Get-LoopSize $unattached) -eq 0) { break }
        }
        $offered.CompletionText | Should -Contain $attached
        $offered.CompletionText | Should -Not -Contain $unattached
        $offered.CompletionText | Should -Not -Contain '/dev/loop-control'
        $mine = $offered | Where-Object CompletionText -eq $attached
        $mine.ResultType | Should -Be 'ProviderItem'
        $mine.ToolTip | Should -BeLike "block device, 16 MiB, loop over */cmp-attached.img"
        (Get-Completion 'Clear-Region -Path /dev/loop-c') | Should -BeNullOrEmpty -Because 'a character device is not offered, and no file completion takes over'
    }

    It 'offers image files and directories to walk into, quoting names with spaces, relative to the location' {
        $folder = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-cmp-$([guid]::NewGuid().ToString('n').Substring(0, 8))"
        New-Item -ItemType Directory "$folder/my images" | Out-Null
        [IO.File]::WriteAllBytes("$folder/my images/disk one.img", [byte[]]::new(8192))
        [IO.File]::WriteAllBytes("$folder/plain.img", [byte[]]::new(4096))
        mkfifo "$folder/pipe"
        Push-Location $folder
        try {
            (Get-Completion 'Clear-Region -Path ').CompletionText | Should -Be @("'my images/'", 'plain.img') -Because 'a fifo is no image file'
            $walked = Get-Completion "Clear-Region -Path 'my images/"
            $walked.CompletionText | Should -Be "'my images/disk one.img'"
            $walked.ToolTip | Should -Be 'image file, 8 KiB'
            (Get-Completion 'Start-RegionCopy -Source pl').CompletionText | Should -Be 'plain.img'
            (Get-Completion "New-MirrorDevice m -Leg $folder/my").CompletionText | Should -Be "'$folder/my images/'"
            (Get-Completion 'Start-RegionCopy -Source ./my').ResultType | Should -Be 'ProviderContainer'
        } finally {
            Pop-Location
            Remove-Item $folder -Recurse -Force
        }
    }
}

Describe 'Completion without a host' {
    It 'returns at once when no host runs, and starts none' {
        $saved = $env:KCOPYD_RUNTIME_DIR
        $env:KCOPYD_RUNTIME_DIR = New-EmptyRuntimeDirectory
        try {
            foreach ($line in 'Get-MirrorDevice -Name ', 'Get-CopyJob -Id ', 'Start-RegionCopy -Client ', 'Start-RegionCopy -Source /dev/loo') {
                $took = Measure-Command { $script:offered = Get-Completion $line }
                $took.TotalSeconds | Should -BeLessThan 3 -Because "'$line' must not wait for a host"
                @($script:offered | Where-Object ResultType -eq 'ParameterValue') | Should -BeNullOrEmpty -Because 'no host, no names'
            }
            Test-Path $env:KCOPYD_RUNTIME_DIR | Should -BeFalse -Because 'no host made its runtime directory or socket'
            Test-HostOf $env:KCOPYD_RUNTIME_DIR | Should -BeFalse
        } finally { $env:KCOPYD_RUNTIME_DIR = $saved }
    }

    It 'gives up within 3 s on a host that takes the connection but never answers' {
        $runtime = New-EmptyRuntimeDirectory
        New-Item -ItemType Directory $runtime | Out-Null
        # A listening socket nobody accepts on: the kernel completes the connection, nothing ever answers.
        $listener = [Net.Sockets.Socket]::new([Net.Sockets.AddressFamily]::Unix, [Net.Sockets.SocketType]::Stream, [Net.Sockets.ProtocolType]::Unspecified)
        try {
            $listener.Bind([Net.Sockets.UnixDomainSocketEndPoint]::new("$runtime/control.sock"))
            $listener.Listen(8)
            # In a pwsh of its own: the connection left waiting there must not hold this session's.
            $lines = Invoke-KcopydInChild -TimeoutSeconds 60 -Environment @{ KCOPYD_RUNTIME_DIR = $runtime } -Command @'
$null = TabExpansion2 -inputScript 'Get-CopyJob -State ' -cursorColumn 19 # PowerShell's own first-completion cost, not the host's
$line = 'Get-MirrorDevice -Name '
$took = Measure-Command { $found = @((TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches) }
"seconds=$($took.TotalSeconds)"
"found=$($found.Count)"
'@
            [double](($lines | Where-Object { $_ -like 'seconds=*' }) -replace 'seconds=') | Should -BeLessThan 3
            $lines | Should -Contain 'found=0'
            Test-HostOf $runtime | Should -BeFalse
        } finally {
            $listener.Dispose()
            Remove-Item $runtime -Recurse -Force -ErrorAction Ignore
        }
    }
}
