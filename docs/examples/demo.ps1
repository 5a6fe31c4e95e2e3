<#
.SYNOPSIS
    Kcopyd's main job on a small default: copy a random region between two loop devices, verify it, show the job.
.DESCRIPTION
    Attaches two loop devices over sparse 256 MiB image files, fills 64 MiB of the first with random data, copies
    it with Start-RegionCopy -Wait to another offset on the second, compares SHA-256 hashes of both regions and
    shows Get-CopyJob. Everything it attaches or creates is removed at the end, also on failure. Needs root.
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../Kcopyd.psd1')
)

$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

function Get-RegionHash([string] $Path, [long] $Offset, [long] $Length) {
    $stream = [IO.File]::Open($Path, 'Open', 'Read', 'ReadWrite')
    try {
        $stream.Position = $Offset
        $buffer = [byte[]]::new($Length)
        $stream.ReadExactly($buffer)
        [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($buffer))
    } finally { $stream.Dispose() }
}

$folder = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-demo-$PID"
New-Item -ItemType Directory $folder -Force | Out-Null
$devices = [Collections.Generic.List[string]]::new()
try {
    foreach ($name in 'source', 'target') {
        $image = Join-Path $folder "$name.img"
        $file = [IO.File]::Create($image); $file.SetLength(256MB); $file.Dispose()
        $devices.Add((losetup --find --show $image))
        if ($LASTEXITCODE) { throw "losetup failed for $image" }
    }
    $source, $target = $devices
    Write-Host "Loop devices: $source (source), $target (target)"

    $random = [byte[]]::new(64MB)
    [Random]::new(2026).NextBytes($random)
    $stream = [IO.File]::Open($source, 'Open', 'Write', 'ReadWrite')
    try { $stream.Position = 16MB; $stream.Write($random, 0, $random.Length); $stream.Flush($true) } finally { $stream.Dispose() }

    $job = Start-RegionCopy -Source $source -SourceOffset 16MB -Destination $target -DestinationOffset 32MB -Length 64MB -Wait -Confirm:$false
    $expected = Get-RegionHash $source 16MB 64MB
    $actual = Get-RegionHash $target 32MB 64MB
    if ($job.State -ne 'Completed' -or $expected -ne $actual) { throw "The copy does not match: job $($job.State), $expected vs $actual" }
    Write-Host "Verified: SHA-256 $actual on both regions"
    Get-CopyJob | Format-Table | Out-Host
} finally {
    foreach ($device in $devices) { losetup -d $device }
    Remove-Item $folder -Recurse -Force
}
