# The output objects as admins and scripts see them: table views within 80 columns (CI logs, redirected output) that
# keep every column, readable sizes in tables and lists, and objects that keep their meaning through Export-Clixml
# and ConvertTo-Json. A host of its own and real loop devices.

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null

    $script:Source = New-TestLoopDevice -Name 'fmt-src.img' -Size 16MB
    $script:Target = New-TestLoopDevice -Name 'fmt-dst.img' -Size 16MB
    $script:Legs = 1..2 | ForEach-Object { New-TestLoopDevice -Name "fmt-leg$_.img" -Size 16MB }
    Write-RandomRegion -Path $script:Source -Offset 0 -Length 1MB -Seed 13
    $script:SmallJob = Start-RegionCopy -Source $script:Source -Destination $script:Target -Length 4KB -Wait -Confirm:$false
    New-MirrorDevice fmt $script:Legs -Confirm:$false | Out-Null
    Wait-MirrorDevice fmt -TimeoutSeconds 60 | Out-Null

    function Get-Table {
        # The objects as the default view prints them at 80 columns; fails the test if any line is wider.
        param([Parameter(ValueFromPipeline)] $InputObject)
        end {
            $text = $input | Out-String -Width 80
            $widest = ($text -split "`n" | Measure-Object Length -Maximum).Maximum
            $widest | Should -BeLessOrEqual 80 -Because "every line fits 80 columns:`n$text"
            $text
        }
    }

    function Assert-Header {
        # The first non-empty line holds every column's label, in order.
        param([string] $Table, [string[]] $Label)
        $header = @($Table -split "`n" | Where-Object { $_.Trim() })[0]
        $header | Should -Match ('^\s*' + (($Label | ForEach-Object { [regex]::Escape($_) }) -join '\s+') + '\s*$') -Because "the header keeps every column:`n$Table"
    }

    function Get-Row {
        param([string] $Table, [string] $Pattern)
        $row = @($Table -split "`n" | Where-Object { $_ -match $Pattern })
        $row.Count | Should -Be 1 -Because "one row matches '$Pattern' in:`n$Table"
        $row[0]
    }
}

AfterAll {
    Remove-MirrorDevice fmt -Confirm:$false -ErrorAction Ignore
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Units' {
    It 'writes sizes in binary units with the unit that fits, rates per second, and short durations that are not 0' {
        [Kcopyd.Protocol.Units]::Size(512) | Should -Be '512 B'
        [Kcopyd.Protocol.Units]::Size(4KB) | Should -Be '4 KiB'
        [Kcopyd.Protocol.Units]::Size(1536) | Should -Be '1.5 KiB'
        [Kcopyd.Protocol.Units]::Size(123456789) | Should -Be '118 MiB'
        [Kcopyd.Protocol.Units]::Size(1GB) | Should -Be '1 GiB'
        [Kcopyd.Protocol.Units]::Size(5TB) | Should -Be '5 TiB'
        [Kcopyd.Protocol.Units]::Size(8192TB) | Should -Be '8192 TiB' -Because 'TiB is the largest unit'
        [Kcopyd.Protocol.Units]::Rate(100MB) | Should -Be '100 MiB/s'
        [Kcopyd.Protocol.Units]::Limit(0) | Should -Be 'none'
        [Kcopyd.Protocol.Units]::SizeAndBytes(4KB) | Should -Be '4 KiB (4,096 bytes)'
        [Kcopyd.Protocol.Units]::Duration([TimeSpan]::FromMilliseconds(4)) | Should -Be '0.004 s'
        [Kcopyd.Protocol.Units]::Duration([TimeSpan]::FromSeconds(3725)) | Should -Be '1:02:05'
        [Kcopyd.Protocol.Units]::Duration([TimeSpan]::FromHours(27.5)) | Should -Be '27:30:00'
        [Kcopyd.Protocol.Units]::Percent(99.96) | Should -Be '99.9' -Because 'only a finished job reads 100'
        foreach ($bytes in 0, 1023, 1000KB, 1023.9KB, 99.96MB, 1000GB, 1023TB) {
            [Kcopyd.Protocol.Units]::Size([long]$bytes).Length | Should -BeLessOrEqual 8 -Because "the table's size columns are 8 wide ($bytes)"
        }
    }
}

Describe 'Table views at 80 columns' {
    It 'keeps every column of a job, a 4 KiB job in KiB and its rate per second' {
        $job = Get-CopyJob -Id $script:SmallJob.Id
        $table = $job | Get-Table
        Assert-Header $table 'Id', 'State', '%', 'Size', 'Rate/s', 'Elapsed', 'Source', 'Destination', 'Error'
        $row = Get-Row $table "^\s*$($job.Id)\s+Completed\s"
        $rate = [Kcopyd.Protocol.Units]::Size($job.BytesPerSecond)
        $elapsed = [Kcopyd.Protocol.Units]::Duration($job.ElapsedTime)
        $row | Should -Match ("^\s*$($job.Id)\s+Completed\s+100\s+4 KiB\s+" + [regex]::Escape($rate) + '\s+' + [regex]::Escape($elapsed) +
            '\s+' + [regex]::Escape($script:Source) + '\s+' + [regex]::Escape($script:Target) + '\s*$')
        $row | Should -Not -Match 'MiB\s' -Because 'a 4 KiB job is not 0 MiB'
        $job.BytesPerSecond | Should -BeGreaterThan 0
    }

    It "keeps a failed job's Error column, its text starting where the header says" {
        $disk = New-FailingDisk -Name 'fmt-fail'
        New-Item -ItemType File $disk.FailReads | Out-Null
        $failed = Start-RegionCopy -Source $disk.Device -Destination $script:Target -Length 64KB -Wait -Confirm:$false -ErrorAction SilentlyContinue
        $failed.State | Should -Be 'Failed'
        $failed.Error | Should -Not -BeNullOrEmpty
        $table = $failed | Get-Table
        Assert-Header $table 'Id', 'State', '%', 'Size', 'Rate/s', 'Elapsed', 'Source', 'Destination', 'Error'
        $column = (@($table -split "`n" | Where-Object { $_.Trim() })[0]).IndexOf('Error')
        $row = Get-Row $table "^\s*$($failed.Id)\s+Failed\s"
        $shown = $row.Substring($column).TrimEnd().TrimEnd([char]0x2026)
        $shown.Length | Should -BeGreaterThan 5
        $failed.Error | Should -BeLike "$([WildcardPattern]::Escape($shown))*"
    }

    It 'keeps every column of a mirror, its legs with the default marked' {
        $table = Get-MirrorDevice fmt | Get-Table
        Assert-Header $table 'Name', 'State', 'Size', 'Sync %', 'Log', 'Legs (* default)'
        $row = Get-Row $table '^fmt\s'
        $row | Should -Match ('^fmt\s+InSync\s+16 MiB\s+100\s+core\s+' + [regex]::Escape("$($script:Legs[0])*, $($script:Legs[1])") + '\s*$')
    }

    It "keeps every column of a mirror's legs" {
        $table = (Get-MirrorDevice fmt).Legs | Get-Table
        Assert-Header $table 'Health', 'Default', 'Reads', 'ReadErrors', 'WriteErrors', 'Path'
        Get-Row $table ([regex]::Escape($script:Legs[0]) + '\s*$') | Should -Match '^Alive\s+True\s+\d+\s+0\s+0\s+/dev/loop'
        Get-Row $table ([regex]::Escape($script:Legs[1]) + '\s*$') | Should -Match '^Alive\s+False\s+\d+\s+0\s+0\s+/dev/loop'
    }

    It 'keeps every column of the host, its socket path whole (wrapped)' {
        $hostInfo = Get-KcopydHost
        $table = $hostInfo | Get-Table
        Assert-Header $table 'ProcessId', 'Version', 'StartTime', 'Jobs', 'Mirrors', 'SocketPath'
        $row = Get-Row $table "^\s*$($hostInfo.ProcessId)\s"
        $row | Should -Match ("^\s*$($hostInfo.ProcessId)\s+" + [regex]::Escape($hostInfo.Version) + '\s+' + $hostInfo.StartTime.ToString('yyyy-MM-dd HH:mm') +
            "\s+$($hostInfo.Jobs) \($($hostInfo.RunningJobs) run\)\s+1\s+/")
        ($table -replace '\s') | Should -BeLike "*$($hostInfo.SocketPath -replace '\s')*"
    }

    It 'keeps every column of the copy clients, their pool and limit in binary units' {
        New-CopyClient fmt -PageCount 64 -SubJobSize 1MB -BytesPerSecond 50MB -DutyCyclePercent 50 -Confirm:$false | Out-Null
        try {
            $table = Get-CopyClient | Get-Table
            Assert-Header $table 'Name', 'Pages free', 'Pool', 'SubJob', 'Jobs', 'Limit', 'Duty %', 'I/O'
            Get-Row $table '^default\s' | Should -Match '^default\s+256/256\s+16 MiB\s+2 MiB\s+0\s+none\s+100\s+(io_uring|blocking)?\s*$'
            Get-Row $table '^fmt\s' | Should -Match '^fmt\s+64/64\s+4 MiB\s+1 MiB\s+0\s+50 MiB/s\s+50\s+(io_uring|blocking)?\s*$'
        } finally { Remove-CopyClient fmt -Confirm:$false }
    }

    It 'keeps every column of an export, its URI whole (wrapped)' {
        $export = Publish-MirrorDevice fmt -Confirm:$false
        try {
            $table = $export | Get-Table
            Assert-Header $table 'Mirror', 'Connections', 'Uri (block device)'
            Get-Row $table '^fmt\s' | Should -Match '^fmt\s+0\s+nbd\+unix:///\?socket='
            ($table -replace '\s') | Should -BeLike "*$($export.Uri -replace '\s')*"
        } finally { Unpublish-MirrorDevice fmt -Confirm:$false }
    }

    It "keeps every column of Test-MirrorDevice's regions that differ" {
        Write-RandomRegion -Path $script:Legs[1] -Offset (3 * 512KB) -Length 4KB -Seed 77   # behind the mirror's back
        $found = @(Test-MirrorDevice fmt -WarningAction SilentlyContinue)
        $found.Count | Should -Be 1
        $table = $found | Get-Table
        Assert-Header $table 'Mirror', 'Region', 'Offset', 'Length', 'Repaired', 'Legs'
        Get-Row $table '^fmt\s' | Should -Match ('^fmt\s+3\s+1572864\s+512 KiB\s+False\s+' + [regex]::Escape($script:Legs[1]) + '\s*$')
        Test-MirrorDevice fmt -Repair -Confirm:$false | Out-Null
    }
}

Describe 'List views' {
    It 'show every property of a job, sizes readable beside their bytes; the properties stay bytes' {
        $job = Get-CopyJob -Id $script:SmallJob.Id
        $list = $job | Format-List | Out-String -Width 80
        foreach ($name in $job.PSObject.Properties.Name) { $list | Should -Match "(?m)^$name\s+:" -Because "Format-List shows $name" }
        $list | Should -Match '(?m)^BytesTotal\s+: 4 KiB \(4,096 bytes\)'
        $list | Should -Match '(?m)^BytesPerSecond\s+: [\d.]+ [KMG]iB/s'
        $list | Should -Match '(?m)^MaxBytesPerSecond\s+: none'
        $job.BytesTotal | Should -BeOfType [long]
        $job.BytesTotal | Should -Be 4KB
    }

    It 'show every property of a mirror, its sizes readable and the time it was taken' {
        $mirror = Get-MirrorDevice fmt
        $list = $mirror | Format-List | Out-String -Width 80
        foreach ($name in $mirror.PSObject.Properties.Name) { $list | Should -Match "(?m)^$name\s+:" -Because "Format-List shows $name" }
        $list | Should -Match '(?m)^Size\s+: 16 MiB \(16,777,216 bytes\)'
        $list | Should -Match '(?m)^RegionSize\s+: 512 KiB \(524,288 bytes\)'
        $list | Should -Match ('(?m)^Legs\s+: ' + [regex]::Escape("$($script:Legs[0])* (Alive), $($script:Legs[1]) (Alive)"))
        $list | Should -Match '(?m)^Timestamp\s+: \S'
        $mirror.Size | Should -Be 16MB
    }

    It 'show every property of the host, clients and legs, sizes readable' {
        $hostInfo = Get-KcopydHost
        $list = $hostInfo | Format-List | Out-String -Width 80
        foreach ($name in $hostInfo.PSObject.Properties.Name) { $list | Should -Match "(?m)^$name\s+:" }
        $list | Should -Match '(?m)^WorkingSetBytes\s+: [\d.]+ MiB \([\d,]+ bytes\)'
        $client = Get-CopyClient default
        $list = $client | Format-List | Out-String -Width 80
        foreach ($name in $client.PSObject.Properties.Name) { $list | Should -Match "(?m)^$name\s+:" }
        $list | Should -Match '(?m)^PageSize\s+: 64 KiB \(65,536 bytes\)'
        $list | Should -Match '(?m)^BytesPerSecond\s+: none'
        $leg = (Get-MirrorDevice fmt).Legs[0]
        $list = $leg | Format-List | Out-String -Width 80
        foreach ($name in $leg.PSObject.Properties.Name) { $list | Should -Match "(?m)^$name\s+:" }
    }
}

Describe 'Output objects' {
    It 'have one property per size: a mirror has Size and RegionSize only' {
        $names = (Get-MirrorDevice fmt).PSObject.Properties.Name
        $names | Should -Contain 'Size'
        $names | Should -Contain 'RegionSize'
        $names | Should -Not -Contain 'SizeBytes'
        $names | Should -Not -Contain 'RegionSizeBytes'
    }

    It 'give a finished job its ElapsedTime, EndTime - StartTime, and a running one its time until the snapshot' {
        $job = Get-CopyJob -Id $script:SmallJob.Id
        $job.ElapsedTime | Should -BeOfType [TimeSpan]
        $job.ElapsedTime | Should -BeGreaterThan ([TimeSpan]::Zero)
        $job.ElapsedTime | Should -Be ($job.EndTime - $job.StartTime)
        $running = Start-RegionCopy -Source $script:Source -Destination $script:Target -BytesPerSecond 1MB -Confirm:$false
        try {
            Start-Sleep -Milliseconds 300
            $now = Get-CopyJob -Id $running.Id
            $now.State | Should -Be 'Running'
            $now.EndTime | Should -BeNullOrEmpty
            $now.ElapsedTime | Should -Be ($now.Timestamp - $now.StartTime)
            $now.ElapsedTime | Should -BeGreaterThan ([TimeSpan]::FromMilliseconds(200))
            (Get-CopyJob -Id $running.Id).Timestamp | Should -BeGreaterThan $now.Timestamp -Because 'a running job is taken anew at every call'
            ($now | Get-Table) | Should -Match "(?m)^\s*$($running.Id)\s+Running\s"
        } finally { Stop-CopyJob -Id $running.Id -Confirm:$false }
    }

    It 'are snapshots that carry the time they were taken; Get-MirrorDevice gives a newer one' {
        $before = Get-MirrorDevice fmt
        $before.Timestamp | Should -BeOfType [datetime]
        ([datetime]::Now - $before.Timestamp) | Should -BeLessThan ([TimeSpan]::FromMinutes(1))
        $taken = $before.Timestamp
        Start-Sleep -Milliseconds 50
        $before.Timestamp | Should -Be $taken -Because 'a mirror object does not change after it was output'
        (Get-MirrorDevice fmt).Timestamp | Should -BeGreaterThan $taken
        $job = Get-CopyJob -Id $script:SmallJob.Id
        $job.Timestamp | Should -BeGreaterOrEqual $job.EndTime -Because "a finished job's values are those of its end, which they stay"
    }

    It 'keep their state names, sizes and views through Export-Clixml and Import-Clixml' {
        $file = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-format-$PID.xml"
        try {
            @((Get-CopyJob -Id $script:SmallJob.Id), (Get-MirrorDevice fmt)) | Export-Clixml $file
            $job, $mirror = Import-Clixml $file
            $job.PSObject.TypeNames[0] | Should -Be 'Deserialized.Kcopyd.Protocol.CopyJobInfo'
            $job.State -eq 'Completed' | Should -BeTrue
            $job.BytesTotal | Should -Be 4KB
            $job.ElapsedTime | Should -BeGreaterThan ([TimeSpan]::Zero)
            $mirror.PSObject.TypeNames[0] | Should -Be 'Deserialized.Kcopyd.Protocol.MirrorInfo'
            $mirror.State -eq 'InSync' | Should -BeTrue
            $mirror.Size | Should -Be 16MB
            $mirror.RegionSize | Should -Be 512KB
            $mirror.Legs[0].Health -eq 'Alive' | Should -BeTrue
            Get-Row ($job | Get-Table) "^\s*$($job.Id)\s+Completed\s" | Should -Match '\s4 KiB\s'
            Get-Row ($mirror | Get-Table) '^fmt\s' | Should -Match '^fmt\s+InSync\s+16 MiB\s'
        } finally { Remove-Item $file -ErrorAction Ignore }
    }

    It 'keep their state names and sizes through ConvertTo-Json and ConvertFrom-Json' {
        $job = Get-CopyJob -Id $script:SmallJob.Id | ConvertTo-Json | ConvertFrom-Json
        $job.State -eq 'Completed' | Should -BeTrue
        $job.BytesTotal | Should -Be 4KB
        $mirror = Get-MirrorDevice fmt | ConvertTo-Json | ConvertFrom-Json   # the default depth keeps the legs
        $mirror.State -eq 'InSync' | Should -BeTrue
        $mirror.Size | Should -Be 16MB
        $mirror.RegionSize | Should -Be 512KB
        $mirror.Legs[0].Health -eq 'Alive' | Should -BeTrue
    }

    It 'still filter by state with Get-CopyJob -State' {
        (Get-CopyJob -State Completed).Id | Should -Contain $script:SmallJob.Id
        (Get-CopyJob -State Running, Queued).Id | Should -Not -Contain $script:SmallJob.Id
        Get-CopyJob -State Completed | ForEach-Object { $_.State | Should -Be 'Completed' }
    }
}
