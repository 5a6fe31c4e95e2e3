# The module's help as an admin meets it: Get-Help of every cmdlet, read in a fresh pwsh (a session caches the help
# it has read), shows the doc's synopsis, every parameter described, and examples that parse; the help files are
# what tools/New-MamlHelp.ps1 makes of docs/, and it refuses docs that do not match the cmdlets.

BeforeDiscovery {
    $script:Cmdlets = @((Import-PowerShellDataFile "$PSScriptRoot/../../Kcopyd.psd1").CmdletsToExport | ForEach-Object { @{ Name = $_ } })
}

BeforeAll {
    $script:Root = (Resolve-Path "$PSScriptRoot/../..").Path
    $script:Manifest = Join-Path $Root 'Kcopyd.psd1'
    $script:Generator = Join-Path $Root 'tools/New-MamlHelp.ps1'
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "kcopyd-help-$PID-$(Get-Random)"
    New-Item -ItemType Directory $Work | Out-Null

    # What Get-Help and Get-Command say of each cmdlet, from a pwsh that has read no help yet.
    $json = Join-Path $Work 'help.json'
    $probe = @'
param($Manifest, $Out)
Import-Module $Manifest
$common = [System.Management.Automation.Cmdlet]::CommonParameters
$commands = foreach ($command in (Get-Module Kcopyd).ExportedCmdlets.Values) {
    $help = Get-Help $command.Name -Full
    [ordered]@{
        Name        = $command.Name
        Synopsis    = "$($help.Synopsis)".Trim()
        Description = @($help.description | ForEach-Object Text) -join "`n"
        Parameters  = @($help.parameters.parameter | Where-Object { $_ } | ForEach-Object {
            @{ Name = $_.name; Description = (@($_.description | ForEach-Object Text) -join "`n").Trim() } })
        Examples    = @($help.examples.example | Where-Object { $_ } | ForEach-Object { @{ Title = $_.title; Code = $_.code } })
        Actual      = @($command.Parameters.Keys | Where-Object { $_ -notin $common })
    }
}
@{ Commands = @($commands); About = (Get-Help about_Kcopyd | Out-String) } | ConvertTo-Json -Depth 5 | Set-Content $Out
'@
    Set-Content (Join-Path $Work 'probe.ps1') $probe
    dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $Work 'probe.ps1') $Manifest $json
    $script:Help = Get-Content $json -Raw | ConvertFrom-Json -AsHashtable

    function script:Get-DocSynopsis([string] $Name) {
        # The doc's SYNOPSIS as Get-Help shows it: its lines joined, code spans bare.
        $lines = Get-Content (Join-Path $Root "docs/$Name.md")
        $start = [array]::IndexOf($lines, '## SYNOPSIS') + 1
        $end = $start; while ($lines[$end] -notmatch '^## ') { $end++ }
        (($lines[$start..($end - 1)] | Where-Object { $_.Trim() }) -join ' ') -replace '`', ''
    }

    function script:Invoke-Generator([string] $Docs, [string] $Out) {
        $output = dotnet pwsh -NoProfile -NonInteractive -File $Generator -ModulePath $Manifest -DocsPath $Docs -OutputPath $Out 2>&1
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($output | Out-String) }
    }
}

AfterAll {
    Remove-Item $Work -Recurse -Force -ErrorAction Ignore
}

Describe 'Get-Help <Name> -Full' -ForEach $Cmdlets {
    BeforeAll {
        $Entry = $Help.Commands | Where-Object { $_.Name -eq $Name }
    }

    It 'shows the doc''s synopsis, not the syntax PowerShell makes up without help' {
        $Entry.Synopsis | Should -Be (Get-DocSynopsis $Name)
        $Entry.Synopsis | Should -Not -BeLike "$Name *"
        $Entry.Description | Should -Not -BeNullOrEmpty
    }

    It 'documents exactly the parameters Get-Command shows, each with a description' {
        $documented = @($Entry.Parameters | ForEach-Object { $_.Name } | Sort-Object) -join ', '
        $documented | Should -Be (@($Entry.Actual | Sort-Object) -join ', ')
        foreach ($parameter in $Entry.Parameters) {
            $parameter.Description | Should -Not -BeNullOrEmpty -Because "-$($parameter.Name) needs a description"
        }
    }

    It 'has at least two examples, and each one''s code parses' {
        $Entry.Examples.Count | Should -BeGreaterOrEqual 2
        foreach ($example in $Entry.Examples) {
            $example.Code | Should -Not -BeNullOrEmpty
            $errors = $null
            [System.Management.Automation.Language.Parser]::ParseInput($example.Code, [ref]$null, [ref]$errors) | Out-Null
            $errors | Should -BeNullOrEmpty -Because "$($example.Title) must parse"
        }
    }
}

Describe 'The help files' {
    It 'show about_Kcopyd with its topics' {
        $Help.About | Should -Match 'about_Kcopyd'
        foreach ($topic in 'SHORT DESCRIPTION', 'COPY CLIENTS AND ISOLATION', 'THE DEADLOCK IT AVOIDS', 'JOBS', 'REGIONS', 'MIRRORS',
            'DIRTY-REGION LOGS', 'THE KCOPYD HOST', 'SEE ALSO') {
            $Help.About | Should -Match ([regex]::Escape($topic))
        }
    }

    It 'are what the generator makes of docs/ now (committed and current)' {
        $out = Join-Path $Work 'fresh'
        $run = Invoke-Generator (Join-Path $Root 'docs') $out
        $run.ExitCode | Should -Be 0 -Because $run.Output
        foreach ($file in 'Kcopyd.dll-Help.xml', 'about_Kcopyd.help.txt') {
            Get-Content (Join-Path $out $file) -Raw | Should -BeExactly (Get-Content (Join-Path $Root "en-US/$file") -Raw) -Because "en-US/$file must be regenerated (./build.ps1 Help)"
        }
        git -C $Root ls-files --error-unmatch en-US/Kcopyd.dll-Help.xml en-US/about_Kcopyd.help.txt | Should -HaveCount 2
    }

    It 'cannot be built from a doc that names a parameter the cmdlet lacks, or leaves one out' {
        $docs = Join-Path $Work 'drifted'
        Copy-Item (Join-Path $Root 'docs') $docs -Recurse
        $doc = Join-Path $docs 'Wait-CopyJob.md'
        $text = (Get-Content $doc -Raw) -replace '### -TimeoutSeconds', '### -Deadline'
        Set-Content $doc $text
        $out = Join-Path $Work 'drifted-out'
        $run = Invoke-Generator $docs $out
        $run.ExitCode | Should -Not -Be 0
        $run.Output | Should -Match 'Wait-CopyJob\.md: -TimeoutSeconds is a parameter of Wait-CopyJob but is not documented'
        $run.Output | Should -Match 'Wait-CopyJob\.md: documents -Deadline, which Wait-CopyJob does not have'
        Join-Path $out 'Kcopyd.dll-Help.xml' | Should -Not -Exist
    }

    It 'cannot be built from a doc whose parameter metadata or syntax is wrong' {
        $docs = Join-Path $Work 'wrong'
        Copy-Item (Join-Path $Root 'docs') $docs -Recurse
        $doc = Join-Path $docs 'Remove-CopyJob.md'
        $text = (Get-Content $doc -Raw) -replace 'Parameter Sets: State', 'Parameter Sets: (All)' -replace 'Remove-CopyJob -State <CopyJobState\[\]>', 'Remove-CopyJob -State <string>'
        Set-Content $doc $text
        $run = Invoke-Generator $docs (Join-Path $Work 'wrong-out')
        $run.ExitCode | Should -Not -Be 0
        $run.Output | Should -Match "Remove-CopyJob\.md: -State: 'Parameter Sets: \(All\)' should be 'Parameter Sets: State'"
        $run.Output | Should -Match "Remove-CopyJob\.md: its SYNTAX differs from Get-Command's"
    }
}
