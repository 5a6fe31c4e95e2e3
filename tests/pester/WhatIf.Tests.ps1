# -WhatIf on every writing cmdlet the other suites do not cover writes nothing (device hashes) and changes nothing
# the host keeps; every cmdlet that changes something supports -WhatIf/-Confirm with a ConfirmImpact fitting the
# damage; and the WhatIf text of each cmdlet that overwrites data names the device and the byte range.

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Legs = 1..2 | ForEach-Object { New-TestLoopDevice -Name "wi-leg$_.img" -Size 4MB }
    $script:Free = 1..2 | ForEach-Object { New-TestLoopDevice -Name "wi-free$_.img" -Size 4MB }
    $script:Busy = New-TestLoopDevice -Name 'wi-busy.img' -Size 16MB
    foreach ($device in $Legs) { Write-RandomRegion -Path $device -Offset 0 -Length 4MB -Seed 3400 }
    Write-RandomRegion -Path $Free[0] -Offset 0 -Length 4MB -Seed 3401
    Write-RandomRegion -Path $Free[1] -Offset 0 -Length 4MB -Seed 3402
    New-MirrorDevice wi $Legs -NoSync -Confirm:$false | Out-Null
    $script:Export = Publish-MirrorDevice wi -Listen "127.0.0.1:$(Get-FreePort)" -Confirm:$false
    New-CopyClient wic -Confirm:$false | Out-Null
    $script:Finished = Start-RegionCopy $Free[0] $Busy -Length 1MB -Wait -Confirm:$false
    $script:Running = Start-RegionCopy $Free[0] $Busy -DestinationOffset 4MB -Length 4MB -BytesPerSecond 64KB -Confirm:$false
    $script:Watched = $Legs + $Free
    function Get-Hashes { foreach ($device in $Watched) { Get-TestSha256 $device 0 4MB } }
    function Get-State {
        # What the host keeps, as text: a -WhatIf must leave all of it as it was.
        $mirror = Get-MirrorDevice wi
        [pscustomobject]@{
            Mirrors = (@(Get-MirrorDevice).Name | Sort-Object) -join ','
            Recovery = $mirror.RecoveryBytesPerSecond
            Exports = (@($mirror.Exports).Uri | Sort-Object) -join ','
            Clients = (@(Get-CopyClient).Name | Sort-Object) -join ','
            Jobs = (@(Get-CopyJob) | ForEach-Object { "$($_.Id):$($_.State -replace 'Queued', 'Running')" }) -join ','
            History = (Get-KcopydHost -WarningAction Ignore).JobHistoryCount
            HostId = (Get-KcopydHost -WarningAction Ignore).ProcessId
        } | ConvertTo-Json -Compress
    }
}

AfterAll {
    Stop-CopyJob -Id $script:Running.Id -Confirm:$false -ErrorAction Ignore
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe '<Command> -WhatIf' -ForEach @(
    @{ Command = 'New-MirrorDevice'; Run = { New-MirrorDevice wi2 $Free -WhatIf } }
    @{ Command = 'Remove-MirrorDevice'; Run = { Remove-MirrorDevice wi -Force -WhatIf } }
    @{ Command = 'Set-MirrorDevice'; Run = { Set-MirrorDevice wi -RecoveryBytesPerSecond 1MB -WhatIf } }
    @{ Command = 'Publish-MirrorDevice'; Run = { Publish-MirrorDevice wi -Listen "127.0.0.1:$(Get-FreePort)" -WhatIf } }
    @{ Command = 'Unpublish-MirrorDevice'; Run = { Unpublish-MirrorDevice wi -Force -WhatIf } }
    @{ Command = 'Remove-CopyClient'; Run = { Remove-CopyClient wic -Force -WhatIf } }
    @{ Command = 'Stop-CopyJob'; Run = { Stop-CopyJob -Id $Running.Id -WhatIf } }
    @{ Command = 'Remove-CopyJob'; Run = { Remove-CopyJob -Id $Finished.Id -WhatIf } }
    @{ Command = 'Set-KcopydHost'; Run = { Set-KcopydHost -JobHistoryCount 1 -WhatIf } }
    @{ Command = 'Stop-KcopydHost'; Run = { Stop-KcopydHost -Force -WhatIf } }
) {
    It 'writes nothing and changes nothing' {
        $hashes = Get-Hashes
        $state = Get-State
        . $Run | Should -BeNullOrEmpty
        Get-State | Should -Be $state
        Get-Hashes | Should -Be $hashes
    }
}

Describe 'ShouldProcess on every cmdlet' {
    It '<Name> supports -WhatIf and -Confirm at <Impact> impact' -ForEach @(
        # Overwrites data on a device.
        @{ Name = 'Start-RegionCopy'; Impact = 'High' }; @{ Name = 'Clear-Region'; Impact = 'High' }
        @{ Name = 'New-MirrorDevice'; Impact = 'High' }; @{ Name = 'Add-MirrorLeg'; Impact = 'High' }
        @{ Name = 'Repair-MirrorDevice'; Impact = 'High' }; @{ Name = 'Test-MirrorDevice'; Impact = 'High' }
        # Takes away what others use: clients of an export, the host's jobs and mirrors.
        @{ Name = 'Unpublish-MirrorDevice'; Impact = 'High' }; @{ Name = 'Stop-KcopydHost'; Impact = 'High' }
        # Ends or removes something, the data stays.
        @{ Name = 'Remove-MirrorDevice'; Impact = 'Medium' }; @{ Name = 'Remove-MirrorLeg'; Impact = 'Medium' }
        @{ Name = 'Publish-MirrorDevice'; Impact = 'Medium' }; @{ Name = 'Stop-CopyJob'; Impact = 'Medium' }
        @{ Name = 'Remove-CopyClient'; Impact = 'Medium' }
        # Settings and lists.
        @{ Name = 'Set-MirrorDevice'; Impact = 'Low' }; @{ Name = 'New-CopyClient'; Impact = 'Low' }
        @{ Name = 'Set-CopyClient'; Impact = 'Low' }; @{ Name = 'Remove-CopyJob'; Impact = 'Low' }
        @{ Name = 'Set-KcopydHost'; Impact = 'Low' }
    ) {
        $command = Get-Command $Name -Module Kcopyd
        $command.Parameters.Keys | Should -Contain 'WhatIf'
        $command.Parameters.Keys | Should -Contain 'Confirm'
        $command.ImplementingType.GetCustomAttributes([Management.Automation.CmdletAttribute], $false)[0].ConfirmImpact | Should -Be $Impact
    }

    It 'leaves out only the cmdlets that change nothing' {
        $without = Get-Command -Module Kcopyd | Where-Object { 'WhatIf' -notin $_.Parameters.Keys } | ForEach-Object Name | Sort-Object
        $without | Should -Be @('Compare-Region', 'Get-CopyClient', 'Get-CopyJob', 'Get-KcopydHost', 'Get-MirrorDevice', 'Get-RegionHash', 'Wait-CopyJob', 'Wait-MirrorDevice')
    }
}

Describe 'The WhatIf text of a cmdlet that overwrites data' {
    It '<Command> names <Device> and the bytes <Bytes>' -ForEach @(
        @{ Command = 'Start-RegionCopy'; Line = { "Start-RegionCopy '$($Free[0])' '$($Free[1])' -SourceOffset 1MB -DestinationOffset 2MB -Length 512KB -WhatIf" }
           Device = { $Free[1] }; Bytes = "$(2MB)-$(2MB + 512KB - 1)" }
        @{ Command = 'Clear-Region'; Line = { "Clear-Region '$($Free[1])' 1MB 4096 -WhatIf" }; Device = { $Free[1] }; Bytes = "$(1MB)-$(1MB + 4095)" }
        @{ Command = 'New-MirrorDevice'; Line = { "New-MirrorDevice wi3 '$($Free[0])', '$($Free[1])' -WhatIf" }; Device = { $Free[1] }; Bytes = "0-$(4MB - 1)" }
        @{ Command = 'Add-MirrorLeg'; Line = { "Add-MirrorLeg wi '$($Free[1])' -WhatIf" }; Device = { $Free[1] }; Bytes = "0-$(4MB - 1)" }
        @{ Command = 'Repair-MirrorDevice -ReplaceLeg'; Line = { "Repair-MirrorDevice wi -ReplaceLeg '$($Legs[1])' -NewLeg '$($Free[1])' -WhatIf" }
           Device = { $Free[1] }; Bytes = "0-$(4MB - 1)" }
        @{ Command = 'Test-MirrorDevice -Repair'; Line = { "Test-MirrorDevice wi -Repair -WhatIf" }; Device = { 'wi' }; Bytes = "0-$(4MB - 1)" }
    ) {
        # In a pwsh of its own (of this file's host), where What if: reaches the console, and so its standard output.
        $hashes = Get-Hashes
        $text = (Invoke-KcopydInChild (& $Line)) -join ' '
        $text | Should -BeLike "*What if: *"
        $text | Should -BeLike "*$(& $Device)*"
        $text | Should -BeLike "*bytes $Bytes*"
        Get-Hashes | Should -Be $hashes
    }
}
