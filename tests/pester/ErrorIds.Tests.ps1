# Every ErrorId the README lists, reached for real: each row runs a refusal with $ErrorActionPreference Stop and
# checks the FullyQualifiedErrorId, the category, and that no watched device changed (hashed before and after).
# Ids no test here can reach are listed in $Unreachable with the reason; a README id in neither list fails the run.

BeforeDiscovery {
    $script:Size = 4MB
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
    $script:Size = 4MB
    $script:Folder = Split-Path (New-TestImage -Name 'ids.marker' -Size 0)
    $script:Python = [Collections.Generic.List[Diagnostics.Process]]::new()

    # Watched: hashed around every row. Busy devices (written on purpose by a fixture's throttled job) are not.
    $script:Src = New-TestLoopDevice -Name 'ids-src.img' -Size $Size
    $script:Dst = New-TestLoopDevice -Name 'ids-dst.img' -Size $Size
    $script:Dst2 = New-TestLoopDevice -Name 'ids-dst2.img' -Size $Size
    $script:Wide = New-TestLoopDevice -Name 'ids-4k.img' -Size $Size -SectorSize 4096
    $script:Legs = 0..3 | ForEach-Object { New-TestLoopDevice -Name "ids-leg$_.img" -Size $Size }
    $script:Fs = New-TestLoopDevice -Name 'ids-fs.img' -Size 8MB
    $script:Slow = 0..2 | ForEach-Object { New-TestLoopDevice -Name "ids-slow$_.img" -Size 16MB }
    $script:Busy = New-TestLoopDevice -Name 'ids-busy.img' -Size 16MB
    $i = 0
    foreach ($device in @($Src, $Dst, $Dst2, $Wide)) { Write-RandomRegion -Path $device -Offset 0 -Length $Size -Seed (3100 + $i++) }
    # The mirrors' legs are made with -NoSync: each pair holds the same bytes, so a restarted host assembles them as they are.
    foreach ($leg in $Legs) { Write-RandomRegion -Path $leg -Offset 0 -Length $Size -Seed (3110 + [math]::Floor([array]::IndexOf($Legs, $leg) / 2)) }
    Write-RandomRegion -Path $Slow[0] -Offset 0 -Length 16MB -Seed 3199
    mkfs.ext4 -q -F $Fs
    $script:Watched = @($Src, $Dst, $Dst2, $Wide) + $Legs + @($Fs, $Slow[0])

    # 'held': a mirror with a log, over legs 0 and 1. 'gone': a log left by a mirror of legs 2 and 3, removed since.
    $script:HeldLog = Join-Path $Folder 'held.log'
    $script:GoneLog = Join-Path $Folder 'gone.log'
    New-MirrorDevice held $Legs[0], $Legs[1] -NoSync -LogPath $HeldLog -Confirm:$false -WarningAction Ignore | Out-Null
    New-MirrorDevice gone $Legs[2], $Legs[3] -NoSync -LogPath $GoneLog -Confirm:$false -WarningAction Ignore | Out-Null
    Remove-MirrorDevice gone -Confirm:$false
    $script:CorruptLog = Join-Path $Folder 'corrupt.log'
    $bytes = [IO.File]::ReadAllBytes($GoneLog)
    $bytes[4096] = $bytes[4096] -bxor 4                                          # slot A's bitmap
    $bytes[$bytes.Length / 2 + 4096] = $bytes[$bytes.Length / 2 + 4096] -bxor 1  # slot B's bitmap
    [IO.File]::WriteAllBytes($CorruptLog, $bytes)

    # 'slow': three legs, recovering at 64 KiB/s, so no leg but the first is in sync for the whole run.
    New-MirrorDevice slow $Slow -RecoveryBytesPerSecond 64KB -Confirm:$false | Out-Null

    # The mirror served over NBD on TCP, in the clear and with TLS.
    $script:Port = Get-FreePort
    $script:Plain = Publish-MirrorDevice held -Listen "127.0.0.1:$Port" -Confirm:$false
    $script:Pki = Join-Path $Folder 'pki'
    $script:OtherPki = Join-Path $Folder 'other-pki'
    New-TestPki $Pki
    New-TestPki $OtherPki
    $script:TlsPort = Get-FreePort
    $script:Tls = Publish-MirrorDevice held -Listen "127.0.0.1:$TlsPort" -TlsCertificateDirectory $Pki -Confirm:$false
    # Broken certificate directories, each one fault away from $Pki.
    $script:Readable = Join-Path $Folder 'readable-pki'; Copy-Item $Pki $Readable -Recurse; chmod 644 "$Readable/server-key.pem"
    $script:WithCrl = Join-Path $Folder 'crl-pki'; Copy-Item $Pki $WithCrl -Recurse; Set-Content "$WithCrl/ca-crl.pem" 'not checked'
    $script:Garbage = Join-Path $Folder 'garbage-pki'; New-Item -ItemType Directory $Garbage | Out-Null
    foreach ($name in 'ca-cert.pem', 'server-cert.pem', 'server-key.pem') { Set-Content "$Garbage/$name" 'not a certificate' }
    chmod 600 "$Garbage/server-key.pem"

    function Start-Python([string] $Code, [string[]] $Arguments) {
        # A small server in python3 that prints 'listening' once it does; AfterAll kills it.
        $start = [Diagnostics.ProcessStartInfo]::new('/usr/bin/python3')
        foreach ($argument in @('-c', $Code) + $Arguments) { $start.ArgumentList.Add($argument) }
        $start.RedirectStandardOutput = $true
        $process = [Diagnostics.Process]::Start($start)
        $script:Python.Add($process)
        $ready = $process.StandardOutput.ReadLineAsync()
        if (-not $ready.Wait([TimeSpan]::FromSeconds(20)) -or $ready.Result -ne 'listening') { throw 'the python server did not listen' }
    }

    # A TCP server that answers every NBD client with bytes that are no NBD handshake.
    $script:GarbagePort = Get-FreePort
    Start-Python -Arguments $GarbagePort -Code @'
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8)
print('listening', flush=True)
while True:
    c, _ = s.accept()
    try: c.sendall(b'HTTP/1.0 400 Bad Request\r\n\r\n' + b'x' * 200)
    except OSError: pass
    c.close()
'@
    # A TCP server that takes connections and never says a word (the kernel's backlog accepts them).
    $script:Silent = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
    $Silent.Start()
    # Fake hosts' runtime directories: one whose host closes every connection unanswered, one that speaks protocol 99.
    $script:Closing = Join-Path $Folder 'closing-run'
    $script:Future = Join-Path $Folder 'future-run'
    New-Item -ItemType Directory $Closing, $Future | Out-Null
    chmod 700 $Closing $Future
    Start-Python -Arguments (Join-Path $Closing 'control.sock') -Code @'
import os, socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o600); s.listen(8)
print('listening', flush=True)
while True:
    c, _ = s.accept(); c.close()
'@
    Start-Python -Arguments (Join-Path $Future 'control.sock') -Code @'
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o600); s.listen(8)
print('listening', flush=True)
while True:
    c, _ = s.accept()
    with c:
        data = b''
        while b'\r\n\r\n' not in data:
            chunk = c.recv(65536)
            if not chunk: break
            data += chunk
        head, _, body = data.partition(b'\r\n\r\n')
        length = int([l.split(b':', 1)[1] for l in head.split(b'\r\n') if l.lower().startswith(b'content-length:')][0])
        while len(body) < length: body += c.recv(65536)
        message = json.loads(body[:length])
        out = json.dumps({'jsonrpc': '2.0', 'id': message['id'], 'result': {'ProtocolVersion': 99, 'ProcessId': os.getpid(), 'Version': '9.9.9'}}).encode()
        c.sendall(b'Content-Length: %d\r\n\r\n' % len(out) + out)
        c.recv(1)
'@

    function Invoke-InRuntimeDirectory([string] $Directory, [scriptblock] $ScriptBlock) {
        # Runs the block against the host of another runtime directory (and a state directory of its own, so a host
        # started there could never assemble this file's mirrors), then comes back to the file's own host.
        $saved = $env:KCOPYD_RUNTIME_DIR, $env:KCOPYD_STATE_DIR
        $env:KCOPYD_RUNTIME_DIR = $Directory
        $env:KCOPYD_STATE_DIR = Join-Path $Folder "state-$(Get-Random)"
        try { & $ScriptBlock } finally { $env:KCOPYD_RUNTIME_DIR, $env:KCOPYD_STATE_DIR = $saved }
    }

    function Start-BusyJob {
        # A copy job that runs for a minute: the source's 4 MiB into the busy device at 64 KiB/s.
        Start-RegionCopy $Src $Busy -Length 4MB -BytesPerSecond 64KB -Confirm:$false
    }

    function Get-Hashes { foreach ($device in $Watched) { Get-TestSha256 $device 0 $Size } }
}

AfterAll {
    foreach ($job in @(Get-CopyJob -State Running -ErrorAction Ignore)) { Stop-CopyJob -Id $job.Id -Confirm:$false -ErrorAction Ignore }
    foreach ($process in $script:Python) { if (-not $process.HasExited) { $process.Kill() }; $process.Dispose() }
    if ($script:Silent) { $script:Silent.Stop() }
    Remove-TestLoopDevices   # stops the file's host first: its exports end, its mirrors close
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Every ErrorId of the README' {
    BeforeDiscovery {
        $script:Rows = @(
            # Regions and devices
            @{ Id = 'DeviceNotFound'; Category = 'ObjectNotFound'; Case = 'a source that does not exist'
               Run = { Start-RegionCopy /dev/kcopyd-no-such $Dst -Length 4096 -Confirm:$false } }
            @{ Id = 'DeviceInUse'; Category = 'ResourceBusy'; Case = 'a mounted destination, named by its mount point'; Message = '*mounted on *'
               Run = { Invoke-WithMountedLoopDevice -Name 'ids-mounted.img' -ReadOnly -ScriptBlock { param($disk) Start-RegionCopy $Src $disk -Length 1MB -Confirm:$false } } }
            @{ Id = 'DeviceInUse'; Category = 'ResourceBusy'; Case = 'a destination a copy job writes, named by the job'; Message = '*being written by copy job *'
               Setup = { $script:Job = Start-BusyJob }; Cleanup = { Stop-CopyJob -Id $Job.Id -Confirm:$false }
               Run = { Start-RegionCopy $Src $Busy -Length 4096 -Confirm:$false } }
            @{ Id = 'DuplicateDevice'; Category = 'InvalidArgument'; Case = 'a destination given twice'; Message = '*given twice*'
               Run = { Start-RegionCopy $Src $Dst, $Dst -Length 4096 -Confirm:$false } }
            @{ Id = 'DuplicateDevice'; Category = 'InvalidArgument'; Case = 'a loop device and its backing file as two destinations'; Message = '*same storage as*'
               Run = { Start-RegionCopy $Src $Dst, (losetup -nO BACK-FILE $Dst).Trim() -Length 4096 -Confirm:$false } }
            @{ Id = 'RegionOutOfRange'; Category = 'InvalidArgument'; Case = 'a region past the end'
               Run = { Start-RegionCopy $Src $Dst -Length 8MB -Confirm:$false } }
            @{ Id = 'RegionOutOfRange'; Category = 'InvalidArgument'; Case = 'a negative -SourceOffset'
               Run = { Start-RegionCopy $Src $Dst -SourceOffset -512 -Length 4096 -Confirm:$false } }
            @{ Id = 'RegionOutOfRange'; Category = 'InvalidArgument'; Case = 'a negative -DestinationOffset'
               Run = { Start-RegionCopy $Src $Dst -DestinationOffset -512 -Length 4096 -Confirm:$false } }
            @{ Id = 'RegionOutOfRange'; Category = 'InvalidArgument'; Case = 'a negative Clear-Region -Offset'
               Run = { Clear-Region $Dst -512 4096 -Confirm:$false } }
            @{ Id = 'UnalignedRegion'; Category = 'InvalidArgument'; Case = 'an offset off the block size'
               Run = { Start-RegionCopy $Src $Dst -SourceOffset 100 -Length 4096 -Confirm:$false } }
            @{ Id = 'OverlappingRegion'; Category = 'InvalidArgument'; Case = 'a destination overlapping the source'
               Run = { Start-RegionCopy $Src $Src -DestinationOffset 512 -Length 1MB -Confirm:$false } }
            @{ Id = 'TooManyDestinations'; Category = 'InvalidArgument'; Case = 'nine destinations'
               Run = { Start-RegionCopy $Src (1..9 | ForEach-Object { "/dev/kcopyd-no-such-$_" }) -Length 4096 -Confirm:$false } }
            @{ Id = 'CopyJobInternal'; Category = 'InvalidOperation'; Case = 'Stop-CopyJob of the recovery copy of mirror slow'
               Run = { Stop-CopyJob -Id (Get-CopyJob -IncludeInternal | Where-Object Internal | Select-Object -First 1).Id -Confirm:$false } }
            @{ Id = 'AsJobWithWait'; Category = 'InvalidArgument'; Case = '-AsJob and -Wait together'
               Run = { Start-RegionCopy $Src $Dst -AsJob -Wait -Confirm:$false } }
            @{ Id = 'InputCount'; Category = 'InvalidArgument'; Case = 'Compare-Region of one input'
               Run = { Compare-Region -Path $Src } }
            @{ Id = 'OffsetCount'; Category = 'InvalidArgument'; Case = 'two offsets for three compared inputs'
               Run = { Compare-Region $Src, $Dst, $Dst2 -Offset 0, 0 } }
            @{ Id = 'RegionOutOfRange'; Category = 'InvalidArgument'; Case = 'a negative offset of a compare'
               Run = { Compare-Region $Src, $Dst -Offset -512 } }
            @{ Id = 'InvalidBlockSize'; Category = 'InvalidArgument'; Case = 'a hash block size that is no power of two'
               Run = { Kcopyd\Get-RegionHash $Src -BlockSize 3000 } }
            @{ Id = 'DestinationOffsetCount'; Category = 'InvalidArgument'; Case = 'three offsets for two destinations'
               Run = { Start-RegionCopy $Src $Dst, $Dst2 -DestinationOffset 0, 0, 0 -Length 4096 -Confirm:$false } }
            @{ Id = 'ClientNotFound'; Category = 'ObjectNotFound'; Case = 'a copy client that does not exist'
               Run = { Start-RegionCopy $Src $Dst -Length 4096 -Client nosuch -Confirm:$false } }
            @{ Id = 'CopyJobNotFound'; Category = 'ObjectNotFound'; Case = 'a job id the host never gave'
               Run = { Get-CopyJob -Id 987654321 } }
            # Copy maps
            @{ Id = 'MapMismatch'; Category = 'InvalidArgument'; Case = 'a -MapPath file that is no copy map'; Message = '*not a Kcopyd copy map*'
               Setup = { Set-Content (Join-Path $Folder 'text.map') 'not a map' }
               Run = { Start-RegionCopy $Src $Dst -Length 4096 -MapPath (Join-Path $Folder 'text.map') -Confirm:$false } }
            @{ Id = 'MapCorrupt'; Category = 'InvalidArgument'; Case = 'a copy map whose slots fail their checksums'
               Setup = { [IO.File]::WriteAllBytes((Join-Path $Folder 'corrupt.map'), [byte[]][char[]]'KCPYDMP1' + [byte[]]::new(16KB)) }
               Run = { Start-RegionCopy $Src $Dst -Length 4096 -MapPath (Join-Path $Folder 'corrupt.map') -Confirm:$false } }
            @{ Id = 'InvalidMapPath'; Category = 'InvalidArgument'; Case = 'a -MapPath that is a symbolic link'; Message = '*symbolic link*'
               Setup = { New-Item -ItemType SymbolicLink -Path (Join-Path $Folder 'link.map') -Target (Join-Path $Folder 'nowhere.map') -Force | Out-Null }
               Run = { Start-RegionCopy $Src $Dst -Length 4096 -MapPath (Join-Path $Folder 'link.map') -Confirm:$false } }
            @{ Id = 'MapInUse'; Category = 'ResourceBusy'; Case = 'a copy map another running copy keeps'
               Setup = { $script:Job = Start-RegionCopy $Src $Busy -Length 4MB -BytesPerSecond 64KB -MapPath (Join-Path $Folder 'busy.map') -Confirm:$false }
               Cleanup = { Stop-CopyJob -Id $Job.Id -Confirm:$false }
               Run = { Start-RegionCopy $Src $Dst -Length 4096 -MapPath (Join-Path $Folder 'busy.map') -Confirm:$false } }
            # Mirrors
            @{ Id = 'MirrorExists'; Category = 'ResourceExists'; Case = 'a name in use'
               Run = { New-MirrorDevice held $Legs[2], $Legs[3] -NoSync -Confirm:$false } }
            @{ Id = 'MirrorNotFound'; Category = 'ObjectNotFound'; Case = 'a mirror that does not exist'
               Run = { Get-MirrorDevice nosuch } }
            @{ Id = 'MirrorInUse'; Category = 'ResourceBusy'; Case = 'removing a mirror a copy job reads'
               Setup = { $script:Job = Start-RegionCopy held $Busy -Length 4MB -BytesPerSecond 64KB -Confirm:$false }
               Cleanup = { Stop-CopyJob -Id $Job.Id -Confirm:$false }
               Run = { Remove-MirrorDevice held -Confirm:$false } }
            @{ Id = 'TooFewLegs'; Category = 'InvalidArgument'; Case = 'one leg'
               Run = { New-MirrorDevice x1 $Legs[2] -Confirm:$false } }
            @{ Id = 'TooFewLegs'; Category = 'InvalidOperation'; Case = 'removing a leg of a two-leg mirror'
               Run = { Remove-MirrorLeg held $Legs[1] -Confirm:$false } }
            @{ Id = 'TooManyLegs'; Category = 'InvalidArgument'; Case = 'ten legs'
               Run = { New-MirrorDevice x2 (1..10 | ForEach-Object { "/dev/kcopyd-no-such-$_" }) -Confirm:$false } }
            @{ Id = 'LegBlockSizeMismatch'; Category = 'InvalidArgument'; Case = 'legs of 512 and 4096-byte blocks'
               Run = { New-MirrorDevice x3 $Legs[2], $Wide -Confirm:$false } }
            @{ Id = 'LegInUse'; Category = 'ResourceBusy'; Case = 'a leg of another mirror, named by it'; Message = "*mirror 'held'*"
               Run = { New-MirrorDevice x4 $Legs[2], $Legs[0] -Confirm:$false } }
            @{ Id = 'LegInUse'; Category = 'ResourceBusy'; Case = 'a copy into a leg of a mirror, named by it'; Message = "*a leg of mirror 'held'*"
               Run = { Start-RegionCopy $Src $Legs[1] -Length 4096 -Confirm:$false } }
            @{ Id = 'LegHoldsData'; Category = 'InvalidArgument'; Case = 'a second leg holding a filesystem'
               Run = { New-MirrorDevice x5 $Legs[2], $Fs -Confirm:$false } }
            @{ Id = 'InvalidRegionSize'; Category = 'InvalidArgument'; Case = 'a region size that is no power of two'
               Run = { New-MirrorDevice x6 $Legs[2], $Legs[3] -NoSync -RegionSize 3000 -Confirm:$false } }
            @{ Id = 'InvalidLegTimeout'; Category = 'InvalidArgument'; Case = 'a negative leg timeout'
               Run = { New-MirrorDevice x6 $Legs[2], $Legs[3] -NoSync -LegTimeoutSeconds -1 -Confirm:$false } }
            @{ Id = 'InvalidLogPath'; Category = 'ObjectNotFound'; Case = 'a log in a directory that does not exist'
               Run = { New-MirrorDevice x7 $Legs[2], $Legs[3] -NoSync -LogPath '/kcopyd-no-such-dir/x7.log' -Confirm:$false } }
            @{ Id = 'LogInUse'; Category = 'ResourceBusy'; Case = 'the log of a live mirror'
               Run = { New-MirrorDevice held2 $Legs[2], $Legs[3] -NoSync -LogPath $HeldLog -Confirm:$false } }
            @{ Id = 'LogMismatch'; Category = 'InvalidArgument'; Case = 'a log of another region size'
               Run = { New-MirrorDevice gone $Legs[2], $Legs[3] -LogPath $GoneLog -RegionSize 1MB -Confirm:$false } }
            @{ Id = 'LogCorrupt'; Category = 'InvalidArgument'; Case = 'a log whose both copies fail their checksum'
               Run = { New-MirrorDevice gone $Legs[2], $Legs[3] -LogPath $CorruptLog -Confirm:$false } }
            @{ Id = 'LegIdentityMismatch'; Category = 'InvalidArgument'; Case = 'the log''s legs in the other order'
               Run = { New-MirrorDevice gone $Legs[3], $Legs[2] -LogPath $GoneLog -Confirm:$false } }
            @{ Id = 'MirrorNotInSync'; Category = 'InvalidOperation'; Case = 'removing the only leg in sync'
               Run = { Remove-MirrorLeg slow $Slow[0] -Confirm:$false } }
            @{ Id = 'LegNotFound'; Category = 'ObjectNotFound'; Case = 'removing a leg the mirror does not have'
               Run = { Remove-MirrorLeg held /dev/kcopyd-no-such -Confirm:$false } }
            @{ Id = 'MirrorSyncTimeout'; Category = 'OperationTimeout'; Case = 'waiting 0 s for a recovering mirror'
               Run = { Wait-MirrorDevice slow -TimeoutSeconds 0 } }
            # Jobs
            @{ Id = 'CopyJobRunning'; Category = 'InvalidOperation'; Case = 'removing a running job'
               Setup = { $script:Job = Start-BusyJob }; Cleanup = { Stop-CopyJob -Id $Job.Id -Confirm:$false }
               Run = { Remove-CopyJob -Id $Job.Id -Confirm:$false } }
            @{ Id = 'CopyJobWaitTimeout'; Category = 'OperationTimeout'; Case = 'waiting 0 s for a running job'
               Setup = { $script:Job = Start-BusyJob }; Cleanup = { Stop-CopyJob -Id $Job.Id -Confirm:$false }
               Run = { Wait-CopyJob -Id $Job.Id -TimeoutSeconds 0 } }
            # The host
            @{ Id = 'HostNotRunning'; Category = 'ObjectNotFound'; Case = 'Get-KcopydHost where no host runs'
               Run = { Invoke-InRuntimeDirectory (Join-Path $Folder 'empty-run') { Get-KcopydHost } } }
            @{ Id = 'HostInUse'; Category = 'ResourceBusy'; Case = 'Stop-KcopydHost with open mirrors, without -Force'
               Run = { Stop-KcopydHost -Confirm:$false } }
            @{ Id = 'HostStartFailed'; Category = 'InvalidOperation'; Case = 'a runtime directory no host can make'
               Run = { Invoke-InRuntimeDirectory '/proc/kcopyd-no-such/run' { Get-CopyJob } } }
            @{ Id = 'HostNotAnswering'; Category = 'DeviceError'; Case = 'a host that closes every connection unanswered (20 s)'
               Run = { Invoke-InRuntimeDirectory $Closing { Get-CopyJob } } }
            @{ Id = 'HostVersionMismatch'; Category = 'InvalidOperation'; Case = 'a host of protocol 99'
               Run = { Invoke-InRuntimeDirectory $Future { Get-CopyJob } } }
            # NBD
            @{ Id = 'ExportInUse'; Category = 'ResourceBusy'; Case = 'unpublishing while a client is connected'
               Setup = { $script:Job = Start-RegionCopy $Plain.Uri $Busy -Length 4MB -BytesPerSecond 64KB -Confirm:$false }
               Cleanup = { Stop-CopyJob -Id $Job.Id -Confirm:$false }
               Run = { Unpublish-MirrorDevice held -Confirm:$false } }
            @{ Id = 'ExportAddressInUse'; Category = 'ResourceBusy'; Case = 'an address already served'
               Run = { Publish-MirrorDevice held -Listen "127.0.0.1:$Port" -Confirm:$false } }
            @{ Id = 'InvalidExportAddress'; Category = 'InvalidArgument'; Case = 'a socket in a directory others may write to'
               Run = { Publish-MirrorDevice held -UnixSocket '/tmp/kcopyd-ids.sock' -Confirm:$false } }
            @{ Id = 'InvalidNbdUri'; Category = 'InvalidArgument'; Case = 'a port out of range'
               Run = { Start-RegionCopy 'nbd://127.0.0.1:99999/x' $Dst -Length 4096 -Confirm:$false } }
            @{ Id = 'NbdConnectFailed'; Category = 'ObjectNotFound'; Case = 'nobody listening'
               Run = { Start-RegionCopy "nbd://127.0.0.1:$(Get-FreePort)/x" $Dst -Length 4096 -Confirm:$false } }
            @{ Id = 'NbdExportNotFound'; Category = 'ObjectNotFound'; Case = 'an export name the server does not offer'
               Run = { Start-RegionCopy "nbd://127.0.0.1:$Port/nosuch" $Dst -Length 4096 -Confirm:$false } }
            @{ Id = 'NbdHandshakeTimeout'; Category = 'DeviceError'; Case = 'a server that never speaks (10 s)'
               Run = { Start-RegionCopy "nbd://127.0.0.1:$($Silent.LocalEndpoint.Port)/x" $Dst -Length 4096 -Confirm:$false } }
            @{ Id = 'NbdHandshakeFailed'; Category = 'DeviceError'; Case = 'a server that is no NBD server'
               Run = { Start-RegionCopy "nbd://127.0.0.1:$GarbagePort/x" $Dst -Length 4096 -Confirm:$false } }
            @{ Id = 'NbdTlsRequired'; Category = 'PermissionDenied'; Case = 'nbd:// to a server that requires TLS'
               Run = { Start-RegionCopy "nbd://127.0.0.1:$TlsPort/held" $Dst -Length 4096 -Confirm:$false } }
            @{ Id = 'NbdTlsNotOffered'; Category = 'InvalidOperation'; Case = 'nbds:// to a server without TLS'
               Run = { Start-RegionCopy "nbds://127.0.0.1:$Port/held?tls-certificates=$Pki" $Dst -Length 4096 -Confirm:$false } }
            @{ Id = 'NbdTlsHandshakeFailed'; Category = 'PermissionDenied'; Case = 'a server certificate of another CA'
               Run = { Start-RegionCopy "nbds://127.0.0.1:$TlsPort/held?tls-certificates=$OtherPki" $Dst -Length 4096 -Confirm:$false } }
            @{ Id = 'NbdTlsPskUnsupported'; Category = 'InvalidArgument'; Case = 'tls-psk-file'
               Run = { Start-RegionCopy "nbds://127.0.0.1:$TlsPort/held?tls-psk-file=/etc/hostname" $Dst -Length 4096 -Confirm:$false } }
            @{ Id = 'TlsBlockDeviceUnsupported'; Category = 'InvalidOperation'; Case = '-BlockDevice with TLS'
               Run = { Publish-MirrorDevice held -Listen "127.0.0.1:$(Get-FreePort)" -TlsCertificateDirectory $Pki -BlockDevice -Confirm:$false } }
            @{ Id = 'TlsAnyClientWithoutTls'; Category = 'InvalidArgument'; Case = '-TlsAnyClient alone'
               Run = { Publish-MirrorDevice held -Listen "127.0.0.1:$(Get-FreePort)" -TlsAnyClient -Confirm:$false } }
            @{ Id = 'TlsCertificatesNotFound'; Category = 'ObjectNotFound'; Case = 'a certificate directory that does not exist'
               Run = { Publish-MirrorDevice held -Listen "127.0.0.1:$(Get-FreePort)" -TlsCertificateDirectory (Join-Path $Folder 'nowhere') -Confirm:$false } }
            @{ Id = 'TlsCertificateInvalid'; Category = 'InvalidArgument'; Case = 'files that hold no certificate'
               Run = { Publish-MirrorDevice held -Listen "127.0.0.1:$(Get-FreePort)" -TlsCertificateDirectory $Garbage -Confirm:$false } }
            @{ Id = 'TlsKeyReadableByOthers'; Category = 'PermissionDenied'; Case = 'a private key every user may read'
               Run = { Publish-MirrorDevice held -Listen "127.0.0.1:$(Get-FreePort)" -TlsCertificateDirectory $Readable -Confirm:$false } }
            @{ Id = 'TlsRevocationListUnsupported'; Category = 'InvalidArgument'; Case = 'a ca-crl.pem'
               Run = { Publish-MirrorDevice held -Listen "127.0.0.1:$(Get-FreePort)" -TlsCertificateDirectory $WithCrl -Confirm:$false } }
        )
        # Ids the README lists that a test on this machine cannot bring about, and why.
        $script:Unreachable = @(
            @{ Id = 'HostAccessDenied'; Reason = 'needs a pwsh that uid 65534 can run (root passes every socket permission); KcopydHost.Tests.ps1 "A cmdlet run as uid 65534" reaches it with a copy of pwsh' }
            @{ Id = 'MapOpenFailed'; Reason = 'an open or create of the map that the system refuses other than for its path (EIO, ENOSPC on its directory): root passes every permission check a test could set up' }
            @{ Id = 'HostError'; Reason = 'a fault of the host itself (a bug, logged whole): no input reaches it by design' }
            @{ Id = 'HostConnectionLost'; Reason = 'reached in its own Describe below: it kills the file''s host' }
            @{ Id = 'MirrorBusy'; Reason = 'every path to it waits 60 s for a repair or scrub that holds the mirror, and a holder stuck on a hung leg gives up after its own 60 s I/O bound: which ends first is a race, not a test' }
            @{ Id = 'BlockDeviceUnavailable'; Reason = 'needs nbdfuse or losetup to fail on a machine where both work (no free loop device, nbdfuse missing), which a test cannot arrange without breaking the other tests running beside it' }
        )
    }

    It 'the table reaches or names every ErrorId the README lists' -ForEach @(@{ Reached = @($Rows.Id); Skipped = @($Unreachable.Id) }) {
        $readme = Get-Content "$PSScriptRoot/../../README.md" -Raw
        $section = [regex]::Match($readme, '(?s)## Errors(.*?)\n## ').Groups[1].Value
        $listed = [regex]::Matches($section, '`([A-Z][A-Za-z]+)`') | ForEach-Object { $_.Groups[1].Value } | Sort-Object -Unique
        $covered = $Reached + $Skipped | Sort-Object -Unique
        $listed | Where-Object { $_ -notin $covered } | Should -BeNullOrEmpty -Because 'every README id needs a row or a reason'
        $covered | Where-Object { $_ -notin $listed } | Should -BeNullOrEmpty -Because 'every id the table reaches is in the README'
    }

    It '<Id> (<Category>): <Case>' -ForEach $Rows {
        if ($Setup) { . $Setup }
        try {
            $before = Get-Hashes
            $err = $null
            try {
                $ErrorActionPreference = 'Stop'
                . $Run | Out-Null
            } catch { $err = $_ } finally { $ErrorActionPreference = 'Continue' }
            $err | Should -Not -BeNullOrEmpty -Because "$Case must be refused"
            $err.FullyQualifiedErrorId | Should -BeLike "$Id,*" -Because $err.Exception.Message
            $err.CategoryInfo.Category | Should -Be $Category
            if ($Message) { $err.Exception.Message | Should -BeLike $Message }
            Get-Hashes | Should -Be $before -Because 'a refusal writes nothing'
        } finally {
            if ($Cleanup) { . $Cleanup }
        }
    }

    It '<Id> is not reached here: <Reason>' -ForEach $Unreachable {
        Set-ItResult -Skipped -Because $Reason
    }
}

Describe 'HostConnectionLost' {
    It 'ends a call the killed host was answering with HostConnectionLost (DeviceError), and the next cmdlet starts a host' {
        $job = Start-BusyJob
        $hostId = (Get-KcopydHost -WarningAction Ignore).ProcessId
        (Get-Content "/proc/$hostId/cmdline" -Raw) | Should -BeLike "*Kcopyd.Host.dll*$env:KCOPYD_RUNTIME_DIR*" -Because 'only the file''s own host is killed'
        $waiting = [powershell]::Create().AddScript({
            param($module, $id)
            Import-Module $module
            try { Wait-CopyJob -Id $id -ErrorAction Stop | Out-Null; 'returned' } catch { "$($_.FullyQualifiedErrorId)|$($_.CategoryInfo.Category)" }
        }).AddArgument("$PSScriptRoot/../../Kcopyd.psd1").AddArgument($job.Id)
        try {
            $async = $waiting.BeginInvoke()
            Start-Sleep -Seconds 2   # Wait-CopyJob is in its WaitJob call by now (the job runs for minutes)
            Stop-Process -Id $hostId -Force
            $async.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(30)) | Should -BeTrue
            $answer = @($waiting.EndInvoke($async))[-1]
            $answer | Should -BeLike 'HostConnectionLost,*|DeviceError'
        } finally { $waiting.Dispose() }
        Update-TestHost | Should -Not -Be $hostId
        Get-TestSha256 $Src 0 $Size | Should -Not -BeNullOrEmpty
    }
}
