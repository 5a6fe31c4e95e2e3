# Real loop devices over sparse image files for the Pester suites. Every device attached through
# New-TestLoopDevice is detached by Remove-TestLoopDevices, which AfterAll blocks call even when tests fail.

$script:Folder = $null
$script:Devices = [Collections.Generic.List[string]]::new()

function New-TestLoopDevice {
    param([Parameter(Mandatory)] [string] $Name, [long] $Size = 64MB)
    $image = New-TestImage -Name $Name -Size $Size
    foreach ($attempt in 1..5) {
        # Another test may take the free device between losetup's find and its attach: try again.
        $device = losetup --find --show $image 2>$null
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

function Remove-TestLoopDevices {
    foreach ($device in $script:Devices) { losetup -d $device 2>$null }
    $script:Devices.Clear()
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

Export-ModuleMember -Function New-TestLoopDevice, New-TestImage, Invoke-WithMountedLoopDevice, Remove-TestLoopDevices, Write-RandomRegion, Get-RegionHash
