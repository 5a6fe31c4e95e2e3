# The reliability suite's scale and its figures. Each scenario file (tests/reliability/*.Tests.ps1) takes its sizes
# from Get-ReliabilityScale and records what it measured with Add-ReliabilityResult into out/reliability/<scenario>.json;
# New-ReliabilityReport turns those records into docs/reliability.md. The build's Reliability task runs the suite at
# the full scale and writes the report; the Test task runs it at the quick scale, whose records nobody publishes.

$script:Root = (Resolve-Path "$PSScriptRoot/../..").Path

function Get-ReliabilityScale {
    # 'quick' (the default, a few minutes inside ./build.ps1 Test) or 'full' (./build.ps1 Reliability), from
    # KCOPYD_RELIABILITY_SCALE.
    $scale = $env:KCOPYD_RELIABILITY_SCALE
    if (-not $scale) { return 'quick' }
    if ($scale -notin 'quick', 'full') { throw "KCOPYD_RELIABILITY_SCALE must be quick or full, not '$scale'" }
    $scale
}

function Select-ReliabilityScale {
    # The value for the scale this run has: Select-ReliabilityScale -Quick 3 -Full 24.
    param([Parameter(Mandatory)] $Quick, [Parameter(Mandatory)] $Full)
    if ((Get-ReliabilityScale) -eq 'full') { $Full } else { $Quick }
}

function Get-ReliabilityFolder {
    # Where the records go: KCOPYD_RELIABILITY_OUT, or out/reliability of the repository.
    $folder = if ($env:KCOPYD_RELIABILITY_OUT) { $env:KCOPYD_RELIABILITY_OUT } else { Join-Path $script:Root 'out/reliability' }
    if (-not (Test-Path $folder)) { New-Item -ItemType Directory $folder -Force | Out-Null }
    $folder
}

function Add-ReliabilityResult {
    <#
    .SYNOPSIS
        Records one case of a scenario: its figures (an ordered hashtable of name = value) and its status (Passed,
        or Pending with the reason it waits for). A case recorded again replaces the earlier record of it. Call it
        once the case's assertions passed, so a record says the case held with these figures.
    #>
    param(
        [Parameter(Mandatory)] [string] $Scenario,
        [Parameter(Mandatory)] [string] $Case,
        [Collections.IDictionary] $Figures = [ordered]@{},
        [ValidateSet('Passed', 'Pending')] [string] $Status = 'Passed',
        [string] $Reason = '',
        [string] $Title = ''
    )
    $path = Join-Path (Get-ReliabilityFolder) "$Scenario.json"
    $record = if (Test-Path $path) { Get-Content $path -Raw | ConvertFrom-Json -AsHashtable } else { [ordered]@{ Scenario = $Scenario; Title = $Title; Cases = @() } }
    if ($Title) { $record.Title = $Title }
    $record.Scale = Get-ReliabilityScale
    $record.Cases = @(@($record.Cases | Where-Object { $_.Case -ne $Case }) + [ordered]@{
            Case = $Case; Status = $Status; Reason = $Reason; Figures = $Figures; Time = [DateTime]::UtcNow.ToString('u')
        })
    $record | ConvertTo-Json -Depth 8 | Set-Content $path
}

function Add-ReliabilityPending {
    # A case that waits for work not merged yet: recorded as pending, and the It that calls it is skipped.
    param([Parameter(Mandatory)] [string] $Scenario, [Parameter(Mandatory)] [string] $Case, [Parameter(Mandatory)] [string] $Reason)
    Add-ReliabilityResult -Scenario $Scenario -Case $Case -Status Pending -Reason $Reason
}

function Clear-ReliabilityRecord {
    # A scenario file's BeforeAll starts its record afresh, so a case this run did not reach is not reported from an older run.
    param([Parameter(Mandatory)] [string] $Scenario, [Parameter(Mandatory)] [string] $Title)
    $path = Join-Path (Get-ReliabilityFolder) "$Scenario.json"
    [ordered]@{ Scenario = $Scenario; Title = $Title; Scale = Get-ReliabilityScale; Cases = @() } | ConvertTo-Json -Depth 8 | Set-Content $path
}

function Get-ProcessMemory {
    # A process's resident memory now (VmRSS) and at its peak (VmHWM), in bytes, from /proc/<id>/status.
    param([Parameter(Mandatory)] [int] $ProcessId)
    $status = Get-Content "/proc/$ProcessId/status" -ErrorAction Stop
    $kb = { param($name) [long](($status | Where-Object { $_ -like "$($name):*" }) -replace '\D', '') * 1024 }
    [pscustomobject]@{ Rss = & $kb 'VmRSS'; Peak = & $kb 'VmHWM' }
}

function Format-Bytes {
    param([double] $Bytes)
    if ($Bytes -ge 1GB) { '{0:N2} GiB' -f ($Bytes / 1GB) } elseif ($Bytes -ge 1MB) { '{0:N1} MiB' -f ($Bytes / 1MB) } elseif ($Bytes -ge 1KB) { '{0:N0} KiB' -f ($Bytes / 1KB) } else { "$Bytes B" }
}

function Get-MachineDescription {
    # The machine the figures are from: CPU, cores, kernel, RAM.
    $cpu = ((Get-Content /proc/cpuinfo | Where-Object { $_ -like 'model name*' } | Select-Object -First 1) -replace '^model name\s*:\s*', '')
    $ram = [long]((Get-Content /proc/meminfo | Where-Object { $_ -like 'MemTotal:*' }) -replace '\D', '') * 1024
    [ordered]@{ Cpu = $cpu; Cores = [Environment]::ProcessorCount; Kernel = (uname -r); Ram = Format-Bytes $ram; Os = ((Get-Content /etc/os-release | Where-Object { $_ -like 'PRETTY_NAME=*' }) -replace '^PRETTY_NAME="?|"$', '') }
}

function ConvertTo-FigureText {
    # One figure's value as the report shows it: lists joined, numbers as they are.
    param($Value)
    if ($null -eq $Value) { return '' }
    if ($Value -is [Collections.IList]) { return (@($Value | ForEach-Object { ConvertTo-FigureText $_ }) -join ', ') }
    if ($Value -is [Collections.IDictionary]) { return (@($Value.Keys | ForEach-Object { "$_ $(ConvertTo-FigureText $Value[$_])" }) -join '; ') }
    "$Value"
}

function New-ReliabilityReport {
    <#
    .SYNOPSIS
        Writes docs/reliability.md from the scenario records in -RecordFolder: one section per scenario, one row per
        case with its figures, the machine and the date on top. -Note adds lines (e.g. that other work shared the machine).
    #>
    param([string] $RecordFolder = (Get-ReliabilityFolder), [string] $OutputPath = (Join-Path $script:Root 'docs/reliability.md'),
        [string[]] $Note = @(), [string[]] $Order = @('faults', 'crash', 'load', 'hostile', 'fuzz'))
    $records = @(Get-ChildItem $RecordFolder -Filter '*.json' | ForEach-Object { Get-Content $_.FullName -Raw | ConvertFrom-Json -AsHashtable })
    $records = @($records | Sort-Object { $i = [array]::IndexOf($Order, $_.Scenario); if ($i -lt 0) { 99 } else { $i } }, { $_.Scenario })
    $machine = Get-MachineDescription
    $lines = [Collections.Generic.List[string]]::new()
    $lines.Add('# Reliability')
    $lines.Add('')
    $lines.Add('Generated by `./build.ps1 Reliability` from the records the suite in `tests/reliability/` writes (do not edit by hand).')
    $lines.Add('Each case below passed its assertions with the figures shown; a pending case waits for work not merged yet.')
    $lines.Add('')
    $lines.Add("- Date: $([DateTime]::UtcNow.ToString('yyyy-MM-dd HH:mm')) UTC")
    $lines.Add("- Machine: $($machine.Cpu), $($machine.Cores) cores, $($machine.Ram) RAM, kernel $($machine.Kernel), $($machine.Os)")
    $scales = @($records | ForEach-Object { $_.Scale } | Sort-Object -Unique)
    $lines.Add("- Scale: $($scales -join ', ')")
    foreach ($line in $Note) { $lines.Add("- $line") }
    foreach ($record in $records) {
        $lines.Add('')
        $lines.Add("## $(if ($record.Title) { $record.Title } else { $record.Scenario })")
        $lines.Add('')
        $lines.Add('| case | status | figures |')
        $lines.Add('|---|---|---|')
        foreach ($case in @($record.Cases)) {
            $figures = if ($case.Status -eq 'Pending') { $case.Reason } else {
                (@($case.Figures.Keys | ForEach-Object { "$_`: $(ConvertTo-FigureText $case.Figures[$_])" }) -join '<br>')
            }
            $lines.Add("| $($case.Case -replace '\|', '/') | $($case.Status) | $($figures -replace '\|', '/') |")
        }
    }
    Set-Content $OutputPath ($lines -join "`n")
    $OutputPath
}

Export-ModuleMember -Function Get-ReliabilityScale, Select-ReliabilityScale, Get-ReliabilityFolder, Add-ReliabilityResult, Add-ReliabilityPending,
    Clear-ReliabilityRecord, Get-ProcessMemory, Format-Bytes, Get-MachineDescription, New-ReliabilityReport
