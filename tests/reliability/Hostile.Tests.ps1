# Hostile input: a table of bad parameters, each refused with its ErrorId and nothing written (every watched device
# hashed before and after the row). tests/pester/ErrorIds.Tests.ps1 reaches every ErrorId once; this table is the
# attacker's list: negative, huge and unaligned numbers, one device under other names, too many destinations,
# directories, character devices, a symlink to a mounted device. The fuzzers' counts are recorded by the
# Reliability build task (record 'fuzz'), which runs them at the full scale.
BeforeDiscovery {
    $script:Rows = @(
        @{ Case = 'negative -Length'; Id = 'ParameterArgumentValidationError'; Run = { Start-RegionCopy $Src $Dst -Length -4096 -Confirm:$false } }
        @{ Case = 'negative -SourceOffset'; Id = 'RegionOutOfRange'; Run = { Start-RegionCopy $Src $Dst -SourceOffset -512 -Length 4096 -Confirm:$false } }
        @{ Case = 'negative -DestinationOffset'; Id = 'RegionOutOfRange'; Run = { Start-RegionCopy $Src $Dst -DestinationOffset -4096 -Length 4096 -Confirm:$false } }
        @{ Case = 'negative -BytesPerSecond'; Id = 'ParameterArgumentValidationError'; Run = { Start-RegionCopy $Src $Dst -Length 4096 -BytesPerSecond -1 -Confirm:$false } }
        @{ Case = 'a huge aligned -Length (1 EiB)'; Id = 'RegionOutOfRange'; Run = { Start-RegionCopy $Src $Dst -Length (1L -shl 60) -Confirm:$false } }
        @{ Case = '-Length [long]::MaxValue'; Id = 'UnalignedRegion'; Run = { Start-RegionCopy $Src $Dst -Length ([long]::MaxValue) -Confirm:$false } }
        @{ Case = 'a -SourceOffset that overflows with the length'; Id = 'RegionOutOfRange'; Run = { Start-RegionCopy $Src $Dst -SourceOffset ([long]::MaxValue - 511) -Length 4096 -Confirm:$false } }
        @{ Case = 'a -DestinationOffset that overflows with the length'; Id = 'RegionOutOfRange'; Run = { Start-RegionCopy $Src $Dst -DestinationOffset ([long]::MaxValue - 4095) -Length 4096 -Confirm:$false } }
        @{ Case = 'an unaligned -Length'; Id = 'UnalignedRegion'; Run = { Start-RegionCopy $Src $Dst -Length 1000 -Confirm:$false } }
        @{ Case = 'an unaligned -SourceOffset'; Id = 'UnalignedRegion'; Run = { Start-RegionCopy $Src $Dst -SourceOffset 100 -Length 4096 -Confirm:$false } }
        @{ Case = 'an offset off a 4 KiB-sector destination'; Id = 'UnalignedRegion'; Run = { Start-RegionCopy $Src $Wide -DestinationOffset 512 -Length 4096 -Confirm:$false } }
        @{ Case = 'overlapping: the source''s backing file as destination'; Id = 'OverlappingRegion'; Run = { Start-RegionCopy $Src $SrcBacking -DestinationOffset 4096 -Length 1MB -Confirm:$false } }
        @{ Case = 'overlapping: a symlink to the source as destination'; Id = 'OverlappingRegion'; Run = { Start-RegionCopy $Src $SrcLink -DestinationOffset 4096 -Length 1MB -Confirm:$false } }
        @{ Case = 'overlapping: the source through a symlink, the device as destination'; Id = 'OverlappingRegion'; Run = { Start-RegionCopy $SrcLink $Src -Length 1MB -Confirm:$false } }
        @{ Case = 'one destination twice: the device and its backing file'; Id = 'DuplicateDevice'; Run = { Start-RegionCopy $Src $Dst, $DstBacking -Length 4096 -Confirm:$false } }
        @{ Case = 'one destination twice: the device and a symlink to it'; Id = 'DuplicateDevice'; Run = { Start-RegionCopy $Src $Dst, $DstLink -Length 4096 -Confirm:$false } }
        @{ Case = '9 real destinations'; Id = 'TooManyDestinations'; Run = { Start-RegionCopy $Src $Nine -Length 4096 -Confirm:$false } }
        @{ Case = 'a directory as source'; Id = 'UnsupportedDevice'; Run = { Start-RegionCopy $Directory $Dst -Length 4096 -Confirm:$false } }
        @{ Case = 'a directory as destination'; Id = 'UnsupportedDevice'; Run = { Start-RegionCopy $Src $Directory -Length 4096 -Confirm:$false } }
        @{ Case = '/dev/null as destination'; Id = 'UnsupportedDevice'; Run = { Start-RegionCopy $Src /dev/null -Length 4096 -Confirm:$false } }
        @{ Case = '/dev/zero as source'; Id = 'UnsupportedDevice'; Run = { Start-RegionCopy /dev/zero $Dst -Length 4096 -Confirm:$false } }
        @{ Case = 'a symlink to a mounted device as destination'; Id = 'DeviceInUse'; Mounted = $true; Run = { Start-RegionCopy $Src $MountedLink -Length 4096 -Confirm:$false } }
        @{ Case = 'a symlink to a mounted device as a mirror leg'; Id = 'LegInUse', 'DeviceInUse'; Mounted = $true; Run = { New-MirrorDevice hostile1 $MountedLink, $Legs[0] -NoSync -Confirm:$false } }
        @{ Case = 'Clear-Region: a negative -Length'; Id = 'ParameterArgumentValidationError'; Run = { Clear-Region $Dst 0 -4096 -Confirm:$false } }
        @{ Case = 'Clear-Region: an offset that overflows'; Id = 'RegionOutOfRange'; Run = { Clear-Region $Dst ([long]::MaxValue - 4095) 4096 -Confirm:$false } }
        @{ Case = 'Clear-Region: a directory'; Id = 'UnsupportedDevice'; Run = { Clear-Region $Directory 0 4096 -Confirm:$false } }
        @{ Case = 'Clear-Region: /dev/null'; Id = 'UnsupportedDevice'; Run = { Clear-Region /dev/null 0 4096 -Confirm:$false } }
        @{ Case = 'a mirror leg that is a directory'; Id = 'UnsupportedDevice'; Run = { New-MirrorDevice hostile2 $Legs[0], $Directory -NoSync -Confirm:$false } }
        @{ Case = 'a mirror leg that is /dev/zero'; Id = 'UnsupportedDevice'; Run = { New-MirrorDevice hostile3 $Legs[0], /dev/zero -NoSync -Confirm:$false } }
        @{ Case = 'one mirror leg twice, through a symlink'; Id = 'DuplicateDevice'; Run = { New-MirrorDevice hostile4 $Legs[0], $LegLink -NoSync -Confirm:$false } }
        @{ Case = 'a mirror log that is a directory'; Id = 'InvalidLogPath'; Run = { New-MirrorDevice hostile5 $Legs -LogPath $Directory -NoSync -Confirm:$false } }
        @{ Case = 'a mirror log that is /dev/null'; Id = 'InvalidLogPath'; Run = { New-MirrorDevice hostile6 $Legs -LogPath /dev/null -NoSync -Confirm:$false } }
        @{ Case = 'a mirror region size that is no power of two'; Id = 'InvalidRegionSize'; Run = { New-MirrorDevice hostile7 $Legs -RegionSize 3000 -NoSync -Confirm:$false } }
        @{ Case = 'a negative mirror region size'; Id = 'ParameterArgumentValidationError'; Run = { New-MirrorDevice hostile8 $Legs -RegionSize -4096 -NoSync -Confirm:$false } }
        @{ Case = 'a copy client of -1 pages'; Id = 'ParameterArgumentValidationError'; Run = { New-CopyClient hostile -PageCount -1 } }
        @{ Case = 'a copy client whose sub-job does not fit its pool'; Id = 'InvalidClientOptions'; Run = { New-CopyClient hostile -PageCount 8 -SubJobSize 1MB } }
    )
}

BeforeAll {
    Import-Module "$PSScriptRoot/../pester/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/ReliabilityReport.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Scenario = 'hostile'
    Clear-ReliabilityRecord $Scenario 'Hostile input: bad parameters refused, nothing written'
    $script:Size = 4MB
    $script:Folder = Split-Path (New-TestImage -Name 'hostile.marker' -Size 0)
    $script:Src = New-TestLoopDevice -Name 'hostile-src.img' -Size $Size
    $script:Dst = New-TestLoopDevice -Name 'hostile-dst.img' -Size $Size
    $script:Wide = New-TestLoopDevice -Name 'hostile-4k.img' -Size $Size -SectorSize 4096
    $script:Nine = @(1..9 | ForEach-Object { New-TestLoopDevice -Name "hostile-n$_.img" -Size 1MB })
    $script:Legs = @(0, 1 | ForEach-Object { New-TestLoopDevice -Name "hostile-leg$_.img" -Size $Size })
    $i = 0
    foreach ($device in @($Src, $Dst, $Wide) + $Nine + $Legs) { Write-RandomRegion -Path $device -Offset 0 -Length (Get-Item $device | ForEach-Object { if ($Nine -contains $device) { 1MB } else { $Size } }) -Seed (1800 + $i++) }
    $script:SrcBacking = (Get-LoopBacking | Where-Object Device -eq $Src).BackingFile
    $script:DstBacking = (Get-LoopBacking | Where-Object Device -eq $Dst).BackingFile
    $script:SrcLink = Join-Path $Folder 'src-link'; ln -s $Src $SrcLink
    $script:DstLink = Join-Path $Folder 'dst-link'; ln -s $Dst $DstLink
    $script:LegLink = Join-Path $Folder 'leg-link'; ln -s $Legs[0] $LegLink
    $script:Directory = Join-Path $Folder 'a-directory'; New-Item -ItemType Directory $Directory | Out-Null
    $script:Watched = @($Src, $Dst, $Wide) + $Nine + $Legs
    $script:Refused = [Collections.Generic.List[object]]::new()

    function Get-Hashes { foreach ($device in $Watched) { Get-TestSha256 $device 0 (Get-Item $device | ForEach-Object { if ($Nine -contains $device) { 1MB } else { $Size } }) } }
}

AfterAll {
    Add-ReliabilityResult $Scenario 'bad parameters' ([ordered]@{
            'rows refused with their ErrorId, nothing written' = "$($Refused.Count) of $($Rows.Count)"
            'devices hashed around each row' = $Watched.Count
            'ErrorIds seen' = (@($Refused | Group-Object Id | Sort-Object Name | ForEach-Object { "$($_.Name) x$($_.Count)" }) -join ', ')
        })
    foreach ($name in @(Get-MirrorDevice -ErrorAction Ignore | Where-Object Name -like 'hostile*')) { Remove-MirrorDevice $name.Name -Confirm:$false -ErrorAction Ignore }
    Get-CopyClient -ErrorAction Ignore | Where-Object Name -ne 'default' | Remove-CopyClient -Force -Confirm:$false -ErrorAction Ignore
    Remove-TestLoopDevices
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Bad parameters' -Tag 'Reliability' {
    It '<Case>: <Id>, nothing written' -ForEach $Rows {
        $before = @(Get-Hashes)
        $record = $null
        $run = $Run
        $attempt = {
            $ErrorActionPreference = 'Stop'
            try { & $run | Out-Null; $null } catch { $_ }
        }
        if ($Mounted) {
            Invoke-WithMountedLoopDevice -Name "hostile-mnt-$(Get-Random).img" -ReadOnly -ScriptBlock {
                param($disk)
                $script:MountedLink = Join-Path $Folder "mounted-link-$(Get-Random)"
                ln -s $disk $MountedLink
                $script:HostileRecord = & $attempt
            } | Out-Null
            $record = $script:HostileRecord
        } else { $record = & $attempt }
        $record | Should -Not -BeNullOrEmpty -Because "$Case must be refused"
        ($record.FullyQualifiedErrorId -split ',')[0] | Should -BeIn @($Id)
        @(Get-Hashes) | Should -Be $before -Because "$Case must write nothing"
        @(Get-MirrorDevice -ErrorAction Ignore | Where-Object Name -like 'hostile*') | Should -BeNullOrEmpty
        @(Get-CopyClient | Where-Object Name -eq 'hostile') | Should -BeNullOrEmpty
        $Refused.Add([pscustomobject]@{ Case = $Case; Id = ($record.FullyQualifiedErrorId -split ',')[0] })
    }
}
