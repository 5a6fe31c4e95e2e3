# Real loop devices over sparse image files for the Pester suites. Every device attached through
# New-TestLoopDevice is detached by Remove-TestLoopDevices, which AfterAll blocks call even when tests fail.

$script:Folder = $null
$script:Devices = [Collections.Generic.List[string]]::new()
$script:NbdDisks = [Collections.Generic.List[object]]::new()

function New-TestLoopDevice {
    param([Parameter(Mandatory)] [string] $Name, [long] $Size = 64MB, [int] $SectorSize = 512)
    $image = New-TestImage -Name $Name -Size $Size
    foreach ($attempt in 1..5) {
        # Another test may take the free device between losetup's find and its attach: try again.
        $device = losetup --find --show --sector-size $SectorSize $image 2>$null
        if (-not $LASTEXITCODE) { break }
        Start-Sleep -Milliseconds (50 * $attempt)
    }
    if ($LASTEXITCODE) { throw "losetup failed for $image" }
    $script:Devices.Add($device)
    $device
}

function New-TestImage {
    param([Parameter(Mandatory)] [string] $Name, [long] $Size = 64MB)
    if (-not $script:Folder) {
        $script:Folder = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-pester-$PID-$(Get-Random)"
        New-Item -ItemType Directory $script:Folder | Out-Null
    }
    $image = Join-Path $script:Folder $Name
    $file = [IO.File]::Create($image); $file.SetLength($Size); $file.Dispose()
    $image
}

function Invoke-WithMountedLoopDevice {
    # Runs $ScriptBlock with the path of a new loop device whose ext4 filesystem is mounted, unmounts it even when
    # the block fails, and returns the path. Remove-TestLoopDevices detaches the device as usual.
    param([Parameter(Mandatory)] [string] $Name, [long] $Size = 32MB, [Parameter(Mandatory)] [scriptblock] $ScriptBlock)
    $disk = New-TestLoopDevice -Name $Name -Size $Size
    mkfs.ext4 -q -F $disk
    $mountPoint = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-mnt-$PID-$(Get-Random)"
    New-Item -ItemType Directory $mountPoint -Force | Out-Null
    mount $disk $mountPoint
    try { & $ScriptBlock $disk | Out-Null } finally {
        umount $mountPoint
        Remove-Item $mountPoint
    }
    $disk
}

function New-TestNbdLoopDevice {
    <#
    .SYNOPSIS
        A loop device over a disk nbdkit serves through nbdfuse (see FAULTS.md in the shared notes): filters make
        it slow or failing on demand, e.g. -Nbdkit '--filter=delay', 'memory', '16M', 'wdelay=20ms'.
    #>
    param([Parameter(Mandatory)] [string] $Name, [Parameter(Mandatory)] [string[]] $Nbdkit)
    $mount = Join-Path (Split-Path (New-TestImage -Name "$Name.marker" -Size 0)) $Name
    New-Item -ItemType Directory $mount | Out-Null
    $disk = Join-Path $mount 'disk'
    $start = [Diagnostics.ProcessStartInfo]::new('nbdfuse')
    foreach ($arg in @($disk, '[', 'nbdkit') + $Nbdkit + ']') { $start.ArgumentList.Add($arg) }
    $process = [Diagnostics.Process]::Start($start)
    $script:NbdDisks.Add([pscustomobject]@{ Mount = $mount; Process = $process })
    $deadline = [DateTime]::UtcNow.AddSeconds(20)
    while (-not (Test-Path $disk)) {
        if ($process.HasExited -or [DateTime]::UtcNow -gt $deadline) { throw "nbdfuse did not bring up $disk" }
        Start-Sleep -Milliseconds 20
    }
    # Direct I/O in the loop driver, so every request reaches nbdkit (and its delays or errors reach us).
    $device = losetup --find --show --direct-io=on $disk
    if ($LASTEXITCODE) { throw "losetup failed for $disk" }
    $script:Devices.Add($device)
    $device
}

function Remove-TestLoopDevices {
    foreach ($device in $script:Devices) { losetup -d $device 2>$null }
    $script:Devices.Clear()
    foreach ($nbd in $script:NbdDisks) {
        fusermount3 -u $nbd.Mount 2>$null
        if (-not $nbd.Process.WaitForExit(10000)) { $nbd.Process.Kill($true) }
    }
    $script:NbdDisks.Clear()
    if ($script:Folder) { Remove-Item $script:Folder -Recurse -Force -ErrorAction Ignore; $script:Folder = $null }
}

function Write-RandomRegion {
    param([string] $Path, [long] $Offset, [long] $Length, [int] $Seed = 1)
    $bytes = [byte[]]::new($Length)
    [Random]::new($Seed).NextBytes($bytes)
    $stream = [IO.File]::Open($Path, 'Open', 'Write', 'ReadWrite')
    try { $stream.Position = $Offset; $stream.Write($bytes, 0, $bytes.Length); $stream.Flush($true) } finally { $stream.Dispose() }
}

function Get-RegionHash {
    param([string] $Path, [long] $Offset, [long] $Length)
    $stream = [IO.File]::Open($Path, 'Open', 'Read', 'ReadWrite')
    try {
        $stream.Position = $Offset
        $buffer = [byte[]]::new($Length)
        $stream.ReadExactly($buffer)
        [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($buffer))
    } finally { $stream.Dispose() }
}

Export-ModuleMember -Function New-TestLoopDevice, New-TestNbdLoopDevice, New-TestImage, Invoke-WithMountedLoopDevice, Remove-TestLoopDevices, Write-RandomRegion, Get-RegionHash
