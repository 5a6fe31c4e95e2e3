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
    # the block fails, and returns the path. Remove-TestLoopDevices detaches the device as usual. -ReadOnly mounts it
    # read-only: the mount still claims the device, and ext4 writes nothing to it, so a block that checks that a
    # refusal wrote nothing cannot see the journal's own commits (seen under load, after sync and a quiet second).
    param([Parameter(Mandatory)] [string] $Name, [long] $Size = 32MB, [Parameter(Mandatory)] [scriptblock] $ScriptBlock, [switch] $ReadOnly)
    $disk = New-TestLoopDevice -Name $Name -Size $Size
    # Inode tables and journal written now, not by ext4lazyinit after the mount: a test that checks nothing was
    # written to the mounted device must not see the filesystem's own background writes.
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 $disk
    $mountPoint = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-mnt-$PID-$(Get-Random)"
    New-Item -ItemType Directory $mountPoint -Force | Out-Null
    if ($ReadOnly) { mount -o ro $disk $mountPoint } else { mount $disk $mountPoint }
    # The mount's own superblock update is committed by the journal a few seconds later: flushed now, so the device
    # is quiet while the block checks that nothing writes to it.
    if (-not $ReadOnly) { sync -f $mountPoint }
    # Still the journal may commit a moment after (seen on a loaded machine): wait until a second passes unchanged.
    $settled = Get-TestSha256 $disk 0 $Size
    foreach ($attempt in $(if ($ReadOnly) { @() } else { 1..15 })) {
        Start-Sleep -Seconds 1
        $now = Get-TestSha256 $disk 0 $Size
        if ($now -eq $settled) { break }
        $settled = $now
    }
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

function New-FailingDisk {
    # A real block device whose reads fail while "$Trigger.r" exists and writes while "$Trigger.w" exists.
    param([Parameter(Mandatory)] [string] $Name, [string] $Size = '16M')
    $trigger = Join-Path (Split-Path (New-TestImage -Name "$Name.marker" -Size 0)) $Name
    $device = New-TestNbdLoopDevice -Name $Name -Nbdkit '--filter=error', 'memory', $Size,
        'error-pread=EIO', 'error-pread-rate=100%', "error-pread-file=$trigger.r",
        'error-pwrite=EIO', 'error-pwrite-rate=100%', "error-pwrite-file=$trigger.w"
    [pscustomobject]@{ Device = $device; FailReads = "$trigger.r"; FailWrites = "$trigger.w" }
}

function New-PausableDisk {
    # A real block device whose requests hang after Send-PauseControl 'p' until Send-PauseControl 'r'.
    param([Parameter(Mandatory)] [string] $Name, [string] $Size = '16M')
    $socket = Join-Path (Split-Path (New-TestImage -Name "$Name.marker" -Size 0)) "$Name.sock"
    $device = New-TestNbdLoopDevice -Name $Name -Nbdkit '--filter=pause', 'memory', $Size, "pause-control=$socket"
    [pscustomobject]@{ Device = $device; Socket = $socket }
}

function Send-PauseControl {
    # Sends a command to nbdkit's pause filter and returns its answer ('P' or 'R' once it took effect).
    param([Parameter(Mandatory)] [string] $Socket, [Parameter(Mandatory)] [char] $Command)
    $client = [Net.Sockets.Socket]::new('Unix', 'Stream', 'Unspecified')
    try {
        $client.ReceiveTimeout = 10000
        $client.Connect([Net.Sockets.UnixDomainSocketEndPoint]::new($Socket))
        $null = $client.Send([byte[]]@([byte]$Command))
        $answer = [byte[]]::new(1)
        $null = $client.Receive($answer)
        [char]$answer[0]
    } finally { $client.Dispose() }
}

function Use-TestHost {
    # Gives this test file a Kcopyd host of its own (runtime and state directories nobody else uses) and starts
    # it now, from this pwsh, so the child processes a test kills never own it. Remove-TestLoopDevices stops it.
    $script:HostFolder = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-host-$([guid]::NewGuid().ToString('n').Substring(0, 12))"
    New-Item -ItemType Directory $script:HostFolder | Out-Null
    $env:KCOPYD_RUNTIME_DIR = Join-Path $script:HostFolder 'run'
    $env:KCOPYD_STATE_DIR = Join-Path $script:HostFolder 'state'
    Get-CopyJob | Out-Null
    $script:HostProcessId = (Get-KcopydHost -WarningAction Ignore).ProcessId
    $script:HostProcessId
}

function Stop-TestHost {
    # Stops the file's host (its mirrors closed, their legs let go) before the loop devices under them go.
    if (-not $script:HostFolder) { return }
    $hostInfo = Get-KcopydHost -ErrorAction Ignore
    if ($hostInfo) { Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30 -WarningAction Continue }
    # Whatever host of this file's runtime directory is left goes now, found by its own command line (never by
    # a process id remembered from before a test restarted it, which the kernel may have given another process).
    $log = Join-Path $env:KCOPYD_RUNTIME_DIR 'host.log'
    foreach ($id in @(pgrep -f -x ".*Kcopyd\.Host\.dll --log $([regex]::Escape($log))")) { Stop-Process -Id $id -Force -ErrorAction Ignore }
    # Block devices a killed host of this file left attached (its next start would have removed them).
    foreach ($loop in @(Get-LoopBacking | Where-Object BackingFile -like "$($script:HostFolder)/*")) { losetup -d $loop.Device 2>$null }
    foreach ($mount in @(Get-Content /proc/self/mountinfo | ForEach-Object { (-split $_)[4] } | Where-Object { $_ -like "$($script:HostFolder)/*" })) {
        fusermount3 -u $mount 2>$null
        if ($LASTEXITCODE) { fusermount3 -uz $mount 2>$null }
    }
    Remove-Item $script:HostFolder -Recurse -Force -ErrorAction Ignore
    $script:HostFolder = $null
    Remove-Item Env:KCOPYD_RUNTIME_DIR, Env:KCOPYD_STATE_DIR -ErrorAction Ignore
}

function Get-LoopBacking {
    # Every attached loop device and its backing file, from sysfs: losetup --list asks each device with an ioctl
    # that stats the file, which hangs while any test's FUSE disk is paused.
    foreach ($folder in @(Get-ChildItem /sys/block -Filter 'loop*' -ErrorAction Ignore)) {
        $file = Get-Content (Join-Path $folder.FullName 'loop/backing_file') -ErrorAction Ignore
        if ($file) { [pscustomobject]@{ Device = "/dev/$($folder.Name)"; BackingFile = ($file -replace ' \(deleted\)$', '') } }
    }
}

function Remove-TestLoopDevices {
    Stop-TestHost
    foreach ($device in $script:Devices) { losetup -d $device 2>$null }
    $script:Devices.Clear()
    foreach ($nbd in $script:NbdDisks) {
        # The loop driver lets go of the FUSE file a moment after losetup -d: try again, and lazily at last.
        foreach ($attempt in 1..5) {
            fusermount3 -u $nbd.Mount 2>$null
            if (-not $LASTEXITCODE) { break }
            Start-Sleep -Milliseconds (100 * $attempt)
        }
        if ($LASTEXITCODE) { fusermount3 -uz $nbd.Mount 2>$null }
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

function Get-TestSha256 {
    param([string] $Path, [long] $Offset, [long] $Length)
    $stream = [IO.File]::Open($Path, 'Open', 'Read', 'ReadWrite')
    try {
        $stream.Position = $Offset
        $buffer = [byte[]]::new($Length)
        $stream.ReadExactly($buffer)
        [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($buffer))
    } finally { $stream.Dispose() }
}

function Add-TestLoopDevice {
    # A loop device over an existing image (or part of it, from -Offset for -SizeLimit bytes), detached by
    # Remove-TestLoopDevices like the others.
    param([Parameter(Mandatory)] [string] $Image, [long] $Offset = 0, [long] $SizeLimit = 0)
    $device = losetup --find --show --offset $Offset --sizelimit $SizeLimit $Image 2>$null
    if ($LASTEXITCODE) { throw "losetup failed for $Image at offset $Offset" }
    $script:Devices.Add($device)
    $device
}

function Invoke-WithTimeout {
    <#
    .SYNOPSIS
        Runs $ScriptBlock in a new runspace of this process (so the module's session is the same one) and gives up
        after $TimeoutSeconds: returns @{ Completed; Output }, Output being what the block wrote to the pipeline.
        A call that never returns is left running on its own thread; the caller unblocks whatever it waits on.
    #>
    param([Parameter(Mandatory)] [scriptblock] $ScriptBlock, [object[]] $ArgumentList = @(), [int] $TimeoutSeconds = 20,
        [string[]] $Module = @())
    $state = [Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
    if ($Module) { $state.ImportPSModule($Module) }
    $runspace = [runspacefactory]::CreateRunspace($state)
    $runspace.Open()
    $shell = [powershell]::Create()
    $shell.Runspace = $runspace
    $null = $shell.AddScript($ScriptBlock.ToString())
    foreach ($argument in $ArgumentList) { $null = $shell.AddArgument($argument) }
    $async = $shell.BeginInvoke()
    if (-not $async.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds($TimeoutSeconds))) {
        $null = $shell.BeginStop($null, $null)
        return [pscustomobject]@{ Completed = $false; Output = @() }
    }
    try { $output = @($shell.EndInvoke($async)) } finally { $shell.Dispose(); $runspace.Dispose() }
    [pscustomobject]@{ Completed = $true; Output = $output }
}

function Invoke-KcopydInChild {
    # Runs $Command in another pwsh process with the module imported and returns its standard output lines;
    # a child that does not finish in $TimeoutSeconds is killed and reported by a throw. With $Namespace it runs in
    # that network namespace (ip netns exec), and $Environment is set for it (the host it starts inherits both).
    param([Parameter(Mandatory)] [string] $Command, [int] $TimeoutSeconds = 60, [string] $Namespace, [hashtable] $Environment = @{})
    $root = (Resolve-Path "$PSScriptRoot/../..").Path
    $prefix = @(if ($Namespace) { 'ip', 'netns', 'exec', $Namespace, 'dotnet' } else { 'dotnet' })
    $start = [Diagnostics.ProcessStartInfo]::new($prefix[0])
    foreach ($arg in @($prefix | Select-Object -Skip 1) + @('pwsh', '-NoProfile', '-NonInteractive', '-Command', "Import-Module '$root/Kcopyd.psd1'; $Command")) {
        $start.ArgumentList.Add($arg)
    }
    foreach ($name in $Environment.Keys) { $start.Environment[$name] = $Environment[$name] }
    $start.WorkingDirectory = $root
    $start.RedirectStandardOutput = $true
    $start.RedirectStandardError = $true
    $process = [Diagnostics.Process]::Start($start)
    try {
        $stdout = $process.StandardOutput.ReadToEndAsync()
        $stderr = $process.StandardError.ReadToEndAsync()
        if (-not $process.WaitForExit($TimeoutSeconds * 1000)) {
            $process.Kill($true)
            throw "the child pwsh$(if ($Namespace) { " in $Namespace" }) did not finish in $TimeoutSeconds s: $Command"
        }
        $process.WaitForExit()
        if ($stderr.Result) { Write-Warning "child stderr: $($stderr.Result)" }
        @($stdout.Result -split "`n" | ForEach-Object Trim | Where-Object { $_ })
    } finally { $process.Dispose() }
}

function Get-FreePort {
    # A loopback TCP port nobody listens on now.
    $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
    $listener.Start()
    try { $listener.LocalEndpoint.Port } finally { $listener.Stop() }
}

function Remove-TestLoopDevice {
    # Detaches one device New-TestLoopDevice or Add-TestLoopDevice attached, now, and forgets it: Remove-TestLoopDevices
    # must not detach, at the end, whatever another process attached under the same number meanwhile.
    param([Parameter(Mandatory)] [string] $Device)
    if (-not $script:Devices.Remove($Device)) { throw "'$Device' is not a loop device these helpers attached" }
    losetup -d $Device
    if ($LASTEXITCODE) { throw "losetup -d $Device failed" }
}

function Update-TestHost {
    # After a test stopped or killed the file's host and a cmdlet started another, that one is the file's host: so
    # Stop-TestHost never kills the first one's process id, which the kernel may have given another process since.
    $script:HostProcessId = (Get-KcopydHost -WarningAction Ignore).ProcessId
    $script:HostProcessId
}

function New-TestPki {
    # A CA, and a server and a client certificate it signs, made by openssl in nbdkit's and qemu's layout in $Folder
    # (the CA's key and the requests beside it, as "$Folder-*": a certificate directory holds no CA key).
    param([Parameter(Mandatory)] [string] $Folder)
    New-Item -ItemType Directory $Folder | Out-Null
    $caKey = "$Folder-ca-key.pem"
    $ec = @('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes')
    openssl req -x509 @ec -keyout $caKey -out "$Folder/ca-cert.pem" -days 2 -subj '/CN=Kcopyd Pester CA' `
        -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>$null
    foreach ($role in 'server', 'client') {
        $purpose = if ($role -eq 'server') { "extendedKeyUsage=serverAuth`nsubjectAltName=DNS:localhost,IP:127.0.0.1" } else { 'extendedKeyUsage=clientAuth' }
        Set-Content "$Folder-$role.ext" "basicConstraints=CA:FALSE`nkeyUsage=critical,digitalSignature`n$purpose"
        openssl req -new @ec -keyout "$Folder/$role-key.pem" -out "$Folder-$role.csr" -subj "/CN=$role" 2>$null
        openssl x509 -req -in "$Folder-$role.csr" -CA "$Folder/ca-cert.pem" -CAkey $caKey -set_serial (Get-Random) -days 2 `
            -extfile "$Folder-$role.ext" -out "$Folder/$role-cert.pem" 2>$null
        chmod 600 "$Folder/$role-key.pem"
    }
    if (-not (Test-Path "$Folder/client-cert.pem")) { throw 'openssl did not make the certificates' }
}

$script:Networks = [Collections.Generic.List[object]]::new()

function Invoke-Ip {
    # ip(8), whose failure is a throw: a network half made must not go unnoticed.
    $output = ip @args 2>&1
    if ($LASTEXITCODE) { throw "ip $($args -join ' ') failed: $output" }
}

function New-TestNetwork {
    <#
    .SYNOPSIS
        Network namespaces of their own, one per -Name, on a test network: a bridge in this namespace holds
        10.213.N.1/24 (N a /24 nobody here uses) and a veth to each namespace, whose end there holds 10.213.N.(2+i).
        Remove-TestNetwork deletes the namespaces, links and bridge, also of a network half made.
    #>
    param([Parameter(Mandatory)] [string[]] $Name)
    $tag = [guid]::NewGuid().ToString('n').Substring(0, 6)
    $used = (ip -4 -o addr show) -join "`n"
    $octet = Get-Random -Minimum 0 -Maximum 256
    foreach ($attempt in 1..256) {
        if ($used -notmatch "\b10\.213\.$octet\.") { break }
        $octet = ($octet + 1) % 256
    }
    $network = [pscustomobject]@{
        # Interface names hold 15 characters: kcb (bridge) or kcv (veth), the tag, the namespace's index.
        Bridge = "kcb$tag"; Gateway = "10.213.$octet.1"; Prefix = "10.213.$octet"
        Namespaces = [Collections.Generic.List[object]]::new()
    }
    $script:Networks.Add($network)
    Invoke-Ip link add $network.Bridge type bridge
    Invoke-Ip addr add "$($network.Gateway)/24" dev $network.Bridge
    Invoke-Ip link set $network.Bridge up
    for ($i = 0; $i -lt $Name.Count; $i++) {
        $namespace = [pscustomobject]@{ Name = "kcopyd-t-$tag-$($Name[$i])"; Address = "10.213.$octet.$(2 + $i)"; Veth = "kcv$tag$i" }
        Invoke-Ip netns add $namespace.Name
        $network.Namespaces.Add($namespace)
        Invoke-Ip link add $namespace.Veth type veth peer name eth0 netns $namespace.Name
        Invoke-Ip link set $namespace.Veth master $network.Bridge up
        Invoke-Ip -n $namespace.Name addr add "$($namespace.Address)/24" dev eth0
        Invoke-Ip -n $namespace.Name link set eth0 up
        Invoke-Ip -n $namespace.Name link set lo up
    }
    $network
}

function Remove-TestNetwork {
    # Deletes every network New-TestNetwork made. Stop the hosts in its namespaces first: what still runs there was
    # started there by the tests (the namespaces' names are new), and is killed so the namespace really goes.
    foreach ($network in $script:Networks) {
        foreach ($namespace in $network.Namespaces) {
            foreach ($id in @(ip netns pids $namespace.Name 2>$null)) { Stop-Process -Id $id -Force -ErrorAction Ignore }
            ip netns del $namespace.Name 2>$null
            # Deleting the namespace deleted the veth pair; one whose namespace never came goes here.
            if (Test-Path "/sys/class/net/$($namespace.Veth)") { ip link del $namespace.Veth 2>$null }
        }
        if (Test-Path "/sys/class/net/$($network.Bridge)") { ip link del $network.Bridge 2>$null }
    }
    $script:Networks.Clear()
}

function Invoke-KcopydInNamespace {
    # Invoke-KcopydInChild in network namespace $Namespace, with $Environment set for the child.
    param([Parameter(Mandatory)] [string] $Namespace, [Parameter(Mandatory)] [string] $Command, [hashtable] $Environment = @{},
        [int] $TimeoutSeconds = 60)
    Invoke-KcopydInChild -Command $Command -TimeoutSeconds $TimeoutSeconds -Namespace $Namespace -Environment $Environment
}

Export-ModuleMember -Function Get-FreePort, Get-LoopBacking, Use-TestHost, Stop-TestHost, Update-TestHost, Remove-TestLoopDevice, New-TestLoopDevice, New-TestNbdLoopDevice, New-TestImage, Invoke-WithMountedLoopDevice, Remove-TestLoopDevices, Write-RandomRegion, Get-TestSha256, Add-TestLoopDevice, Invoke-WithTimeout, Invoke-KcopydInChild, New-TestPki, New-FailingDisk, New-PausableDisk, Send-PauseControl, New-TestNetwork, Remove-TestNetwork, Invoke-KcopydInNamespace
