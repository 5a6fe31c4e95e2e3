#requires -Version 7.4
<#
.SYNOPSIS
    Builds, tests, packages, benchmarks and demonstrates the Kcopyd module.
.DESCRIPTION
    The first argument names the task: Build (the default), Test, Package, Bench, Help, Demo, Reliability. Help turns
    docs/ into en-US/ against the module Build made; Build does it too. Reliability runs tests/reliability at its full
    scale and the fuzzers at 10 times their cases, and writes docs/reliability.md.
    Run it through the repository's own PowerShell: dotnet tool restore; dotnet pwsh ./build.ps1 <Task>
#>
[CmdletBinding()]
param(
    [Parameter(Position = 0)]
    [ValidateSet('Build', 'Test', 'Package', 'Bench', 'Help', 'Demo', 'Reliability')]
    [string] $Task = 'Build',

    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',

    # Bench only: the rest of the command line goes to tests/benchmark/Invoke-Benchmark.ps1 (-SizeGiB 0.25 -Runs 1).
    [Parameter(ValueFromRemainingArguments)]
    [string[]] $BenchArguments = @()
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
$Root = $PSScriptRoot
$Out = Join-Path $Root 'out'
$PesterVersion = '6.2.0'

function Invoke-Native {
    # Runs a native command and stops the build when it fails. Takes plain $args so -o and -c reach the command.
    $file, $arguments = $args
    & $file @arguments
    if ($LASTEXITCODE -ne 0) { throw "$file $($arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

function Install-DebianPackage {
    # Installs the Debian packages that provide commands the tests and benchmarks use, when any is missing.
    param([Parameter(Mandatory)] [hashtable] $PackageOfCommand)
    $missing = @($PackageOfCommand.Keys | Where-Object { -not (Get-Command $_ -CommandType Application -ErrorAction Ignore) })
    if (-not $missing) { return }
    $packages = @($missing | ForEach-Object { $PackageOfCommand[$_] } | Sort-Object -Unique)
    Write-Host "Installing $($packages -join ', ') for $($missing -join ', ')"
    $env:DEBIAN_FRONTEND = 'noninteractive'
    Invoke-Native apt-get -qq update
    Invoke-Native apt-get -qq install -y --no-install-recommends @packages
}

function Invoke-Build {
    # Publishes the module into bin/, so Import-Module ./Kcopyd.psd1 loads it from the repository root: the cmdlets
    # in bin/, their RPC client in bin/deps/ (its own load context), the host the cmdlets start in bin/host/.
    $bin = Join-Path $Root 'bin'
    Remove-Item $bin -Recurse -Force -ErrorAction Ignore
    Invoke-Native dotnet publish (Join-Path $Root 'src/Kcopyd/Kcopyd.csproj') -c $Configuration -o $bin --nologo -v quiet
    # Ahead-of-time compiled (ReadyToRun): the client's first call and the host's start are paid in every new session.
    # The compiled copies of dependencies are made afresh: an incremental build keeps one compiled from an older
    # package version when the newer package's file is older than it (System.IO.Hashing 8.0.0 under 9.0.23's deps.json).
    Get-ChildItem (Join-Path $Root 'src') -Directory -Recurse -Filter R2R -ErrorAction Ignore |
        Where-Object { $_.FullName -like '*/obj/*' } | Remove-Item -Recurse -Force
    Invoke-Native dotnet publish (Join-Path $Root 'src/Kcopyd.Client/Kcopyd.Client.csproj') -c $Configuration -r linux-x64 --self-contained false `
        '-p:PublishReadyToRun=true' -o (Join-Path $bin 'deps') --nologo -v quiet
    Invoke-Native dotnet publish (Join-Path $Root 'src/Kcopyd.Host/Kcopyd.Host.csproj') -c $Configuration -r linux-x64 --self-contained false `
        '-p:PublishReadyToRun=true' -o (Join-Path $bin 'host') --nologo -v quiet
    Write-Host "Built the module into $bin"
    Invoke-Help
}

function Invoke-Package {
    # A module folder that Import-Module loads from anywhere: out/Kcopyd/{Kcopyd.psd1, bin/, en-US/}.
    Invoke-Build
    $module = Join-Path $Out 'Kcopyd'
    Remove-Item $module -Recurse -Force -ErrorAction Ignore
    New-Item -ItemType Directory $module | Out-Null
    Copy-Item (Join-Path $Root 'Kcopyd.psd1') $module
    Copy-Item (Join-Path $Root 'bin') $module -Recurse
    Copy-Item (Join-Path $Root 'en-US') $module -Recurse
    Write-Host "Packaged the module into $module"
    $module
}

function Get-PesterManifest {
    Invoke-Native dotnet restore (Join-Path $Root 'tests/TestTools.proj') --nologo -v quiet
    $packages = (dotnet nuget locals global-packages --list) -replace '^global-packages:\s*', ''
    Join-Path $packages.Trim() "pester/$PesterVersion/tools/Pester.psd1"
}

function Invoke-XunitTests {
    # One xunit project; returns its pass and fail counts and the failed tests' names from the TRX report.
    param([Parameter(Mandatory)] [string] $Project, [Parameter(Mandatory)] [string] $Name, [string] $Filter)
    $results = Join-Path $Out 'TestResults'
    $trx = Join-Path $results "$Name.trx"
    Remove-Item $trx -ErrorAction Ignore
    $only = @(if ($Filter) { '--filter', $Filter })
    dotnet test (Join-Path $Root $Project) -c $Configuration --nologo @only `
        --logger "trx;LogFileName=$Name.trx" --logger 'console;verbosity=normal' --results-directory $results | Out-Host
    if (-not (Test-Path $trx)) { return [pscustomobject]@{ Passed = 0; Failed = 1; FailedNames = @("$Name (no test report)") } }
    $run = ([xml](Get-Content $trx -Raw)).TestRun
    $counters = $run.ResultSummary.Counters
    $failedNames = @($run.Results.UnitTestResult | Where-Object outcome -ne 'Passed' | ForEach-Object { "$Name`: $($_.testName)" })
    [pscustomobject]@{ Passed = [int]$counters.passed; Failed = [int]$counters.failed + [int]$counters.error + [int]$counters.timeout; FailedNames = $failedNames }
}

function Invoke-CmdletTests {
    # Pester over the cmdlets, in a fresh pwsh so the module loads as a user's session would load it. The Reliability
    # task runs tests/reliability here too (-Path, -Name), at its full scale.
    param([string[]] $Path = @('tests/pester'), [string] $Name = 'pester')
    $pester = Get-PesterManifest
    $result = Join-Path $Out "TestResults/$Name.json"
    Remove-Item $result -ErrorAction Ignore
    $paths = ($Path | ForEach-Object { "'$(Join-Path $Root $_)'" }) -join ', '
    $script = @"
Import-Module '$pester' -RequiredVersion $PesterVersion
`$config = New-PesterConfiguration
`$config.Run.Path = @($paths)
`$config.Run.PassThru = `$true
`$config.Output.Verbosity = 'Detailed'
`$run = Invoke-Pester -Configuration `$config
`$names = @(`$run.Failed | ForEach-Object { '$($Name): ' + `$_.ExpandedPath }) + @(`$run.FailedBlocks + `$run.FailedContainers | ForEach-Object { '$($Name): ' + `$_.Name })
@{ Passed = `$run.PassedCount; Failed = `$run.FailedCount + `$run.FailedBlocksCount + `$run.FailedContainersCount; FailedNames = `$names } | ConvertTo-Json | Set-Content '$result'
"@
    dotnet pwsh -NoProfile -NonInteractive -Command $script | Out-Host
    if (-not (Test-Path $result)) { return [pscustomobject]@{ Passed = 0; Failed = 1; FailedNames = @("$Name (no result)") } }
    Get-Content $result -Raw | ConvertFrom-Json
}

function Invoke-Test {
    # Every suite, then one closing line over all of them.
    # nbdkit + nbdfuse + losetup make real block devices that fail on demand (fault tests).
    # NBD: nbdinfo and nbdcopy (libnbd-bin), qemu-nbd, qemu-img and qemu-io (qemu-utils) are the clients and servers
    # the NBD tests meet; openssl makes the CA and certificates of the TLS tests.
    Install-DebianPackage @{ losetup = 'mount'; 'mkfs.ext4' = 'e2fsprogs'; nbdkit = 'nbdkit'; nbdfuse = 'libnbd-bin'; fusermount3 = 'fuse3'; setpriv = 'util-linux'; sfdisk = 'fdisk'; python3 = 'python3-minimal'
        'qemu-nbd' = 'qemu-utils'; 'qemu-io' = 'qemu-utils'; fio = 'fio'; ip = 'iproute2'; openssl = 'openssl' }
    Invoke-Package | Out-Null   # builds too; the cmdlet tests import the packaged folder as well
    $suites = @(
        Invoke-XunitTests 'tests/Kcopyd.Engine.Tests' 'engine'
        Invoke-XunitTests 'tests/Kcopyd.Host.Tests' 'host'
        Invoke-CmdletTests
    )
    $passed = ($suites | Measure-Object Passed -Sum).Sum
    $failed = ($suites | Measure-Object Failed -Sum).Sum
    # The names last, just above the closing line, where a log's tail still shows them.
    $suites | ForEach-Object { $_.FailedNames } | Where-Object { $_ } | ForEach-Object { Write-Host "FAILED $_" }
    Write-Host "$passed passed, $failed failed"
    if ($failed -gt 0) { exit 1 }
}

function Invoke-Reliability {
    # The reliability suite at its full scale (tests/reliability, KCOPYD_RELIABILITY_SCALE=full: 24 kills, 32 clients
    # for 5 minutes) and the engine's fuzzers at 10 times their cases, then docs/reliability.md from their records,
    # with the machine, the date and the load average around the run (other work on the machine shows there).
    Install-DebianPackage @{ losetup = 'mount'; 'mkfs.ext4' = 'e2fsprogs'; nbdkit = 'nbdkit'; nbdfuse = 'libnbd-bin'; fusermount3 = 'fuse3' }
    Invoke-Build
    Import-Module (Join-Path $Root 'tests/reliability/ReliabilityReport.psm1') -Force
    $records = Join-Path $Out 'reliability'
    Remove-Item $records -Recurse -Force -ErrorAction Ignore
    New-Item -ItemType Directory $records | Out-Null
    $loadBefore = (Get-Content /proc/loadavg) -split ' ' | Select-Object -First 3
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $saved = $env:KCOPYD_RELIABILITY_SCALE, $env:KCOPYD_RELIABILITY_OUT, $env:KCOPYD_FUZZ_SCALE, $env:KCOPYD_FUZZ_REPORT
    $fuzzScale = 10
    $fuzzReport = Join-Path $records 'fuzz.txt'
    try {
        $env:KCOPYD_RELIABILITY_SCALE = 'full'
        $env:KCOPYD_RELIABILITY_OUT = $records
        $suites = @(Invoke-CmdletTests -Path 'tests/reliability' -Name 'reliability')
        $env:KCOPYD_FUZZ_SCALE = "$fuzzScale"
        $env:KCOPYD_FUZZ_REPORT = $fuzzReport
        $fuzz = Invoke-XunitTests 'tests/Kcopyd.Engine.Tests' 'fuzz' -Filter 'FullyQualifiedName~FuzzTests'
        $suites += $fuzz
    } finally {
        $env:KCOPYD_RELIABILITY_SCALE, $env:KCOPYD_RELIABILITY_OUT, $env:KCOPYD_FUZZ_SCALE, $env:KCOPYD_FUZZ_REPORT = $saved
    }
    Clear-ReliabilityRecord -Scenario fuzz -Title 'Fuzzers: log reader, map reader, NBD server (fixed seeds)'
    foreach ($line in @(if (Test-Path $fuzzReport) { Get-Content $fuzzReport })) {
        $fuzzer, $figures = $line -split "`t", 2
        if ($fuzz.Failed -gt 0) { break }   # the counts of a failed run are no figures of a pass
        Add-ReliabilityResult -Scenario fuzz -Case $fuzzer -Figures ([ordered]@{ 'cases' = $figures; 'scale' = "x$fuzzScale" })
    }
    Add-ReliabilityPending -Scenario fuzz -Case 'map reader: mutated copy maps' -Reason 'needs -MapPath'
    $loadAfter = (Get-Content /proc/loadavg) -split ' ' | Select-Object -First 3
    $failed = ($suites | Measure-Object Failed -Sum).Sum
    $passed = ($suites | Measure-Object Passed -Sum).Sum
    $note = @(
        "Run: $passed passed, $failed failed, in $([int]$clock.Elapsed.TotalMinutes) min"
        "Load average (1, 5, 15 min) before the run: $($loadBefore -join ', '); after: $($loadAfter -join ', ') (above 0 before: other work shared the machine)"
    )
    $report = New-ReliabilityReport -RecordFolder $records -Note $note
    Write-Host "Wrote $report"
    $suites | ForEach-Object { $_.FailedNames } | Where-Object { $_ } | ForEach-Object { Write-Host "FAILED $_" }
    Write-Host "$passed passed, $failed failed"
    if ($failed -gt 0) { exit 1 }
}

function Invoke-Bench {
    # Kcopyd against dd, qemu-img, nbdcopy and blkdiscard on the same loop devices; writes docs/benchmark.md.
    # GNU time reads the other tools' peak memory. The benchmark runs in a pwsh of its own, so its arguments
    # reach it as they were typed.
    Install-DebianPackage @{ losetup = 'mount'; blkdiscard = 'util-linux'; 'qemu-img' = 'qemu-utils'; nbdcopy = 'libnbd-bin'; nbdkit = 'nbdkit'; nbdfuse = 'libnbd-bin'; fusermount3 = 'fuse3'; fio = 'fio'; time = 'time' }
    Invoke-Build
    Invoke-Native dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $Root 'tests/benchmark/Invoke-Benchmark.ps1') `
        -ModulePath (Join-Path $Root 'Kcopyd.psd1') @BenchArguments
}

function Invoke-Help {
    # docs/<Cmdlet>.md and docs/about_Kcopyd.md (platyPS's markdown) into en-US/, which the module loads its help
    # from; a doc that differs from the built cmdlets stops the build. In a pwsh of its own, which imports the module.
    if (-not (Test-Path (Join-Path $Root 'bin/Kcopyd.dll'))) { throw 'The help is checked against the built module: run ./build.ps1 Build (it writes the help too).' }
    Invoke-Native dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $Root 'tools/New-MamlHelp.ps1') `
        -ModulePath (Join-Path $Root 'Kcopyd.psd1') -DocsPath (Join-Path $Root 'docs') -OutputPath (Join-Path $Root 'en-US')
}

function Invoke-Demo {
    # The module's main job on a small default: copy a random region between two loop devices and verify it.
    Install-DebianPackage @{ losetup = 'mount' }
    Invoke-Build
    & (Join-Path $Root 'docs/examples/demo.ps1') -ModulePath (Join-Path $Root 'Kcopyd.psd1')
}

if ($BenchArguments -and $Task -ne 'Bench') { throw "Unknown arguments for $($Task): $BenchArguments" }
switch ($Task) {
    'Build' { Invoke-Build }
    'Test' { Invoke-Test }
    'Package' { Invoke-Package }
    'Bench' { Invoke-Bench }
    'Help' { Invoke-Help }
    'Demo' { Invoke-Demo }
    'Reliability' { Invoke-Reliability }
}
