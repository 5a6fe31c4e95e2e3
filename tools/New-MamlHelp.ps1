#requires -Version 7.4
<#
.SYNOPSIS
    Turns docs/<Cmdlet>.md into en-US/Kcopyd.dll-Help.xml (MAML) and docs/about_Kcopyd.md into
    en-US/about_Kcopyd.help.txt, after checking every doc against the built module.
.DESCRIPTION
    The docs keep to platyPS's markdown schema 2.0.0 (PowerShell/platyPS, platyPS.schema.md), so platyPS could take
    them over; it cannot be installed here, so this does its New-ExternalHelp. Beyond platyPS, a doc must match the
    cmdlet: its SYNTAX blocks are Get-Command's parameter sets, its PARAMETERS are exactly the cmdlet's (common
    parameters aside), each with a description and the yaml block Get-Command's metadata gives, and its OUTPUTS name
    every [OutputType]. Any difference stops the run, naming the doc and what differs.
    In an example, the first ```powershell block is the code; text and any other fenced block (```text for output)
    are its remarks.
    Run it in a pwsh of its own (build.ps1 does): it imports the module from -ModulePath.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $DocsPath,
    [Parameter(Mandatory)] [string] $OutputPath
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Maml = 'http://schemas.microsoft.com/maml/2004/10'
$Command = 'http://schemas.microsoft.com/maml/dev/command/2004/10'
$Dev = 'http://schemas.microsoft.com/maml/dev/2004/10'
$Problems = [Collections.Generic.List[string]]::new()

function Read-Markdown {
    # A doc as front matter, its title and its sections, each with its own lines and its subsections. A command doc
    # has its sections at ## and subsections at ###; an about topic (-About) has # sections, ## subtopics, and
    # its lookup name as the ## right after the title.
    param([string] $Path, [switch] $About)
    $lines = @(Get-Content $Path)
    $doc = @{ Path = $Path; Metadata = @{}; Title = ''; Lookup = ''; Sections = [ordered]@{} }
    $i = 0
    if ($lines.Count -and $lines[0] -eq '---') {
        for ($i = 1; $lines[$i] -ne '---'; $i++) {
            if ($lines[$i] -match '^([^:]+):\s*(.*)$') { $doc.Metadata[$Matches[1]] = $Matches[2].Trim() }
        }
        $i++
    }
    $sectionLevel = if ($About) { 1 } else { 2 }
    $section = $null; $sub = $null; $fenced = $false
    for (; $i -lt $lines.Count; $i++) {
        $line = $lines[$i]
        if ($line -match '^```') { $fenced = -not $fenced }
        if (-not $fenced -and $line -match '^(#{1,3}) (.+)$') {
            $level = $Matches[1].Length; $title = $Matches[2].Trim()
            if (-not $doc.Title -and $level -eq 1) { $doc.Title = $title }
            elseif ($About -and -not $section -and $level -eq 2) { $doc.Lookup = $title }
            elseif ($level -eq $sectionLevel) {
                $section = @{ Lines = [Collections.Generic.List[string]]::new(); Subs = [Collections.Generic.List[object]]::new() }
                $doc.Sections[$title] = $section
                $sub = $null
            } elseif ($level -eq $sectionLevel + 1 -and $section) {
                $sub = @{ Title = $title; Lines = [Collections.Generic.List[string]]::new() }
                $section.Subs.Add($sub)
            } else { throw "$($Path): the header '$line' is out of place" }
            continue
        }
        if ($sub) { $sub.Lines.Add($line) } elseif ($section) { $section.Lines.Add($line) }
    }
    $doc
}

function Split-Block {
    # Markdown lines as blocks: fenced code (its language and lines, dedented) or a paragraph of plain text.
    # A paragraph's lines join with spaces; list items stay one to a line.
    param([string[]] $Lines)
    $blocks = [Collections.Generic.List[object]]::new()
    $text = [Collections.Generic.List[string]]::new()
    $code = $null
    $flush = {
        if ($text.Count) { $blocks.Add([pscustomobject]@{ Kind = 'text'; Language = ''; Text = (Join-Paragraph $text) }); $text.Clear() }
    }
    foreach ($line in $Lines) {
        if ($null -ne $code) {
            if ($line -match '^```') { $blocks.Add([pscustomobject]@{ Kind = 'code'; Language = $code.Language; Text = (Format-Dedented $code.Lines) }); $code = $null }
            else { $code.Lines.Add($line) }
        } elseif ($line -match '^```(\w*)') {
            & $flush
            $code = @{ Language = $Matches[1]; Lines = [Collections.Generic.List[string]]::new() }
        } elseif ($line.Trim() -eq '') { & $flush }
        else { $text.Add($line) }
    }
    & $flush
    $blocks
}

function Join-Paragraph {
    # A paragraph's lines as one line, a list's items as one line each.
    param([Collections.Generic.List[string]] $Lines)
    $out = [Collections.Generic.List[string]]::new()
    foreach ($line in $Lines) {
        if ($line -match '^\s*(-|\*|\d+\.) ' -or -not $out.Count) { $out.Add($line.Trim()) }
        else { $out[$out.Count - 1] += ' ' + $line.Trim() }
    }
    ConvertTo-PlainText ($out -join "`n")
}

function Format-Dedented {
    # Code as written, less its common indentation (Get-Help trims a paragraph's first line, not the others).
    param([Collections.Generic.List[string]] $Lines)
    $indent = ($Lines | Where-Object { $_.Trim() } | ForEach-Object { $_.Length - $_.TrimStart().Length } | Measure-Object -Minimum).Minimum
    ($Lines | ForEach-Object { if ($_.Length -ge $indent) { $_.Substring([int]$indent) } else { $_.Trim() } }) -join "`n"
}

function ConvertTo-PlainText {
    # What the console shows of inline markdown: code spans and emphasis bare, a link as its text.
    param([string] $Text)
    $Text = $Text -replace '\[([^\]]+)\]\((?!https?:)[^)]*\)', '$1' -replace '\[([^\]]+)\]\((https?:[^)]*)\)', '$1 ($2)'
    $Text = $Text -replace '`([^`]*)`', '$1' -replace '\*\*([^*]+)\*\*', '$1' -replace '\\([\\`*_<>\[\]#|-])', '$1'
    $Text
}

function Get-SectionText {
    # A section's paragraphs, code kept as it is.
    param($Lines)
    @((Split-Block $Lines) | ForEach-Object { $_.Text })
}

function Read-Yaml {
    param([string] $Text)
    $yaml = @{}
    foreach ($line in $Text -split "`n") { if ($line -match '^([^:]+):\s*(.*)$') { $yaml[$Matches[1].Trim()] = $Matches[2].Trim() } }
    $yaml
}

function Add-Problem { param([string] $Doc, [string] $Message) $Problems.Add("$(Split-Path $Doc -Leaf): $Message") }

function Get-ExpectedParameter {
    # What a doc's yaml block must say of a parameter, from the cmdlet's metadata (in every set it is in).
    param([System.Management.Automation.ParameterMetadata] $Parameter)
    $sets = @($Parameter.ParameterSets.Keys)
    $data = @($Parameter.ParameterSets.Values)
    $pipeline = @(if ($data.ValueFromPipelineByPropertyName -contains $true) { 'ByPropertyName' }; if ($data.ValueFromPipeline -contains $true) { 'ByValue' })
    $position = @($data.Position | Sort-Object -Unique)
    $attributes = $Parameter.Attributes
    $elementType = if ($Parameter.ParameterType.IsArray) { $Parameter.ParameterType.GetElementType() } else { $Parameter.ParameterType }
    $accepted = @($attributes | Where-Object { $_ -is [System.Management.Automation.ValidateSetAttribute] } | ForEach-Object ValidValues)
    if (-not $accepted -and $elementType.IsEnum) { $accepted = [Enum]::GetNames($elementType) }
    [ordered]@{
        'Type'                       = $Parameter.ParameterType.Name
        'Parameter Sets'             = if ($sets -contains '__AllParameterSets') { '(All)' } else { ($sets | Sort-Object) -join ', ' }
        'Aliases'                    = $Parameter.Aliases -join ', '
        'Accepted values'            = $accepted -join ', '
        'Required'                   = if (@($data.IsMandatory | Sort-Object -Unique).Count -gt 1) { 'varies' } else { "$($data[0].IsMandatory)" }
        'Position'                   = if ($position.Count -gt 1) { 'varies' } elseif ($position[0] -lt 0) { 'Named' } else { "$($position[0])" }
        'Accept pipeline input'      = if ($pipeline) { "True ($($pipeline -join ', '))" } else { 'False' }
        'Accept wildcard characters' = "$([bool]($attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] }))"
    }
}

function Read-CommandDoc {
    # A cmdlet's doc, checked against the cmdlet, as the parts its MAML needs.
    param([string] $Path, [System.Management.Automation.CmdletInfo] $Cmdlet)
    $doc = Read-Markdown $Path
    $name = $Cmdlet.Name
    foreach ($pair in @{ 'external help file' = 'Kcopyd.dll-Help.xml'; 'Module Name' = 'Kcopyd'; 'schema' = '2.0.0' }.GetEnumerator()) {
        if ($doc.Metadata[$pair.Key] -ne $pair.Value) { Add-Problem $Path "its front matter must say '$($pair.Key): $($pair.Value)'" }
    }
    if ($doc.Title -ne $name) { Add-Problem $Path "its title is '$($doc.Title)', not '$name'" }
    foreach ($section in 'SYNOPSIS', 'SYNTAX', 'DESCRIPTION', 'EXAMPLES', 'PARAMETERS', 'INPUTS', 'OUTPUTS', 'NOTES', 'RELATED LINKS') {
        if (-not $doc.Sections.Contains($section)) { Add-Problem $Path "has no '## $section' section"; $doc.Sections[$section] = @{ Lines = @(); Subs = @() } }
    }
    $s = $doc.Sections
    $synopsis = (Get-SectionText $s.SYNOPSIS.Lines) -join ' '
    if (-not $synopsis) { Add-Problem $Path 'has no synopsis' }
    $description = Get-SectionText $s.DESCRIPTION.Lines
    if (-not $description) { Add-Problem $Path 'has no description' }

    # SYNTAX: one block per parameter set, as Get-Command shows it.
    $sets = @($Cmdlet.ParameterSets)
    $expectedSyntax = @($sets | ForEach-Object {
        $title = if ($sets.Count -eq 1) { $_.Name } elseif ($_.IsDefault) { "$($_.Name) (Default)" } else { $_.Name }
        "### $title`n$name $_"
    })
    $documentedSyntax = @($s.SYNTAX.Subs | ForEach-Object { "### $($_.Title)`n$(@(Split-Block $_.Lines | Where-Object Kind -EQ 'code').Text)" })
    if (($expectedSyntax -join "`n") -ne ($documentedSyntax -join "`n")) {
        $fence = '```'
        $blocks = $expectedSyntax | ForEach-Object { $title, $line = $_ -split "`n"; "$title`n$fence`n$line`n$fence" }
        Add-Problem $Path "its SYNTAX differs from Get-Command's; it should be:`n$($blocks -join "`n`n")"
    }

    # PARAMETERS: exactly the cmdlet's, each described, with the metadata Get-Command gives.
    $common = [System.Management.Automation.Cmdlet]::CommonParameters
    $actual = @($Cmdlet.Parameters.Values | Where-Object { $_.Name -notin $common })
    $actualNames = @($actual | ForEach-Object Name)
    $parameters = [ordered]@{}
    foreach ($sub in $s.PARAMETERS.Subs) {
        if ($sub.Title -eq 'CommonParameters') { continue }
        $blocks = @(Split-Block $sub.Lines)
        $parameters[$sub.Title.TrimStart('-')] = @{
            Description = @($blocks | Where-Object Kind -EQ 'text' | ForEach-Object Text)
            Yaml        = Read-Yaml (@($blocks | Where-Object { $_.Kind -eq 'code' -and $_.Language -eq 'yaml' } | ForEach-Object Text) -join "`n")
        }
    }
    foreach ($missing in $actualNames | Where-Object { -not $parameters.Contains($_) }) { Add-Problem $Path "-$missing is a parameter of $name but is not documented" }
    foreach ($extra in $parameters.Keys | Where-Object { $_ -notin $actualNames }) { Add-Problem $Path "documents -$extra, which $name does not have" }
    if (-not ($s.PARAMETERS.Subs | Where-Object Title -EQ 'CommonParameters')) { Add-Problem $Path "has no '### CommonParameters'" }
    foreach ($parameter in $actual | Where-Object { $parameters.Contains($_.Name) }) {
        $documented = $parameters[$parameter.Name]
        if (-not $documented.Description) { Add-Problem $Path "-$($parameter.Name) has no description" }
        $expected = Get-ExpectedParameter $parameter
        foreach ($key in $expected.Keys) {
            $given = if ($documented.Yaml.ContainsKey($key)) { $documented.Yaml[$key] } else { '' }
            if ($given -ne $expected[$key]) { Add-Problem $Path "-$($parameter.Name): '$($key): $given' should be '$($key): $($expected[$key])'" }
        }
        $documented.Set = @($parameter.ParameterSets.Keys) # which syntax items it goes in
        if (-not $documented.Yaml.ContainsKey('Default value')) { Add-Problem $Path "-$($parameter.Name) has no 'Default value'" }
    }

    # EXAMPLES: at least two, each with code.
    $examples = @($s.EXAMPLES.Subs | ForEach-Object {
        $blocks = @(Split-Block $_.Lines)
        $code = @($blocks | Where-Object { $_.Kind -eq 'code' -and $_.Language -eq 'powershell' })
        if (-not $code) { Add-Problem $Path "example '$($_.Title)' has no powershell code block" }
        $first = $code | Select-Object -First 1
        @{ Title = $_.Title; Code = $first.Text; Remarks = @($blocks | Where-Object { -not [object]::ReferenceEquals($_, $first) } | ForEach-Object Text) }
    })
    if ($examples.Count -lt 2) { Add-Problem $Path "has $($examples.Count) example(s); at least 2 are needed" }

    $typeSections = { param($section) @($section.Subs | ForEach-Object { @{ Name = $_.Title; Text = @(Get-SectionText $_.Lines) } }) }
    $outputs = & $typeSections $s.OUTPUTS
    foreach ($type in $Cmdlet.OutputType | Where-Object { $_.Name -ne 'System.Void' }) {
        if ($type.Name -notin @($outputs | ForEach-Object { $_.Name })) { Add-Problem $Path "OUTPUTS does not name $($type.Name), the cmdlet's [OutputType]" }
    }
    @{
        Name        = $name
        Verb        = $Cmdlet.Verb
        Noun        = $Cmdlet.Noun
        Synopsis    = $synopsis
        Description = $description
        Sets        = $sets
        Parameters  = $parameters
        Examples    = $examples
        Inputs      = & $typeSections $s.INPUTS
        Outputs     = $outputs
        Notes       = @(Get-SectionText $s.NOTES.Lines)
        Links       = @($s.'RELATED LINKS'.Lines | Select-String '\[([^\]]+)\]\(([^)]*)\)' | ForEach-Object {
                @{ Text = $_.Matches[0].Groups[1].Value; Uri = if ($_.Matches[0].Groups[2].Value -match '^https?:') { $_.Matches[0].Groups[2].Value } else { '' } } })
    }
}

function Write-Paragraphs {
    param([System.Xml.XmlWriter] $Xml, [string[]] $Text)
    if (-not $Text) { $Xml.WriteElementString('para', $Maml, ''); return }
    foreach ($para in $Text) { $Xml.WriteElementString('para', $Maml, $para) }
}

function Write-Parameter {
    # One parameter, for a syntax item (no switch value, accepted values as a group) or the PARAMETERS list.
    param([System.Xml.XmlWriter] $Xml, [string] $Name, $Parameter, [switch] $InSyntax)
    $yaml = $Parameter.Yaml
    $Xml.WriteStartElement('command', 'parameter', $Command)
    $Xml.WriteAttributeString('required', $yaml.Required.ToLowerInvariant())
    $Xml.WriteAttributeString('variableLength', 'true')
    $Xml.WriteAttributeString('globbing', $yaml.'Accept wildcard characters'.ToLowerInvariant())
    $Xml.WriteAttributeString('pipelineInput', $yaml.'Accept pipeline input')
    $Xml.WriteAttributeString('position', $yaml.Position.ToLowerInvariant())
    $Xml.WriteAttributeString('aliases', $(if ($yaml.Aliases) { $yaml.Aliases } else { 'none' }))
    $Xml.WriteElementString('name', $Maml, $Name)
    $Xml.WriteStartElement('description', $Maml); Write-Paragraphs $Xml $Parameter.Description; $Xml.WriteEndElement()
    $switch = $yaml.Type -eq 'SwitchParameter'
    if ($InSyntax -and $yaml['Accepted values']) {
        $Xml.WriteStartElement('command', 'parameterValueGroup', $Command)
        foreach ($value in $yaml['Accepted values'] -split ',\s*') {
            $Xml.WriteStartElement('command', 'parameterValue', $Command)
            $Xml.WriteAttributeString('required', 'false'); $Xml.WriteAttributeString('command', 'variableLength', $Command, 'false')
            $Xml.WriteString($value); $Xml.WriteEndElement()
        }
        $Xml.WriteEndElement()
    }
    if (-not ($InSyntax -and $switch)) {
        $Xml.WriteStartElement('command', 'parameterValue', $Command)
        $Xml.WriteAttributeString('required', $(if ($switch) { 'false' } else { 'true' }))
        $Xml.WriteAttributeString('variableLength', "$($yaml.Type.EndsWith('[]'))".ToLowerInvariant())
        $Xml.WriteString($yaml.Type); $Xml.WriteEndElement()
    }
    $Xml.WriteStartElement('dev', 'type', $Dev); $Xml.WriteElementString('name', $Maml, $yaml.Type); $Xml.WriteElementString('uri', $Maml, ''); $Xml.WriteEndElement()
    $Xml.WriteElementString('defaultValue', $Dev, $yaml.'Default value')
    $Xml.WriteEndElement()
}

function Write-TypeList {
    param([System.Xml.XmlWriter] $Xml, [string] $List, [string] $Item, $Types)
    $Xml.WriteStartElement('command', $List, $Command)
    foreach ($type in $Types) {
        $Xml.WriteStartElement('command', $Item, $Command)
        $Xml.WriteStartElement('dev', 'type', $Dev); $Xml.WriteElementString('name', $Maml, $type.Name); $Xml.WriteEndElement()
        $Xml.WriteStartElement('description', $Maml); Write-Paragraphs $Xml $type.Text; $Xml.WriteEndElement()
        $Xml.WriteEndElement()
    }
    $Xml.WriteEndElement()
}

function Write-Command {
    # One command:command element, in the layout platyPS's New-ExternalHelp writes and Get-Help reads.
    param([System.Xml.XmlWriter] $Xml, $Doc)
    $Xml.WriteStartElement('command', 'command', $Command)
    $Xml.WriteAttributeString('xmlns', 'maml', $null, $Maml)
    $Xml.WriteAttributeString('xmlns', 'command', $null, $Command)
    $Xml.WriteAttributeString('xmlns', 'dev', $null, $Dev)
    $Xml.WriteStartElement('command', 'details', $Command)
    $Xml.WriteElementString('command', 'name', $Command, $Doc.Name)
    $Xml.WriteElementString('command', 'verb', $Command, $Doc.Verb)
    $Xml.WriteElementString('command', 'noun', $Command, $Doc.Noun)
    $Xml.WriteStartElement('description', $Maml); Write-Paragraphs $Xml $Doc.Synopsis; $Xml.WriteEndElement()
    $Xml.WriteEndElement()
    $Xml.WriteStartElement('description', $Maml); Write-Paragraphs $Xml $Doc.Description; $Xml.WriteEndElement()

    $Xml.WriteStartElement('command', 'syntax', $Command)
    foreach ($set in $Doc.Sets) {
        $Xml.WriteStartElement('command', 'syntaxItem', $Command)
        $Xml.WriteElementString('name', $Maml, $Doc.Name)
        # Positional parameters first, in their order, as Get-Command -Syntax shows them.
        $inSet = @($Doc.Parameters.GetEnumerator() | Where-Object { $_.Value.Set -contains $set.Name -or $_.Value.Set -contains '__AllParameterSets' })
        $ordered = @($inSet | Where-Object { $_.Value.Yaml.Position -ne 'Named' } | Sort-Object { [int]$_.Value.Yaml.Position }) + @($inSet | Where-Object { $_.Value.Yaml.Position -eq 'Named' })
        foreach ($entry in $ordered) { Write-Parameter $Xml $entry.Key $entry.Value -InSyntax }
        $Xml.WriteEndElement()
    }
    $Xml.WriteEndElement()

    $Xml.WriteStartElement('command', 'parameters', $Command)
    foreach ($entry in $Doc.Parameters.GetEnumerator()) { Write-Parameter $Xml $entry.Key $entry.Value }
    $Xml.WriteEndElement()

    Write-TypeList $Xml 'inputTypes' 'inputType' $Doc.Inputs
    Write-TypeList $Xml 'returnValues' 'returnValue' $Doc.Outputs
    $Xml.WriteStartElement('alertSet', $Maml); $Xml.WriteStartElement('alert', $Maml); Write-Paragraphs $Xml $Doc.Notes; $Xml.WriteEndElement(); $Xml.WriteEndElement()

    $Xml.WriteStartElement('command', 'examples', $Command)
    foreach ($example in $Doc.Examples) {
        $Xml.WriteStartElement('command', 'example', $Command)
        $Xml.WriteElementString('title', $Maml, "-------------------------- $($example.Title) --------------------------")
        $Xml.WriteElementString('code', $Dev, $example.Code)
        # An empty last paragraph: Get-Help then leaves a blank line before the next example's title.
        $Xml.WriteStartElement('remarks', $Dev); Write-Paragraphs $Xml (@($example.Remarks) + ''); $Xml.WriteEndElement()
        $Xml.WriteEndElement()
    }
    $Xml.WriteEndElement()

    $Xml.WriteStartElement('command', 'relatedLinks', $Command)
    foreach ($link in $Doc.Links) {
        $Xml.WriteStartElement('navigationLink', $Maml)
        $Xml.WriteElementString('linkText', $Maml, $link.Text)
        $Xml.WriteElementString('uri', $Maml, $link.Uri)
        $Xml.WriteEndElement()
    }
    $Xml.WriteEndElement()
    $Xml.WriteEndElement()
}

function Format-Wrapped {
    # Text wrapped to 80 columns at an indent; a list item's lines continue under its text.
    param([string] $Text, [int] $Indent)
    foreach ($line in $Text -split "`n") {
        $hanging = if ($line -match '^(-|\*|\d+\.) ') { $Matches[0].Length } else { 0 }
        $current = ' ' * $Indent
        foreach ($word in $line -split ' ') {
            if ($current.Trim() -and $current.Length + 1 + $word.Length -gt 80) {
                $current.TrimEnd()
                $current = ' ' * ($Indent + $hanging)
            }
            $current += $(if ($current.Trim()) { ' ' } else { '' }) + $word
        }
        $current.TrimEnd()
    }
}

function ConvertTo-AboutText {
    # platyPS's about topic (# Title, ## about_Name, then # SECTIONS with ## subtopics) as the text Get-Help shows.
    param([string] $Path)
    $doc = Read-Markdown $Path -About
    $expected = [IO.Path]::GetFileNameWithoutExtension($Path)
    if ($doc.Lookup -ne $expected) { Add-Problem $Path "its second header must be '## $expected'" }
    foreach ($section in 'SHORT DESCRIPTION', 'LONG DESCRIPTION', 'SEE ALSO') {
        if (-not $doc.Sections.Contains($section)) { Add-Problem $Path "has no '# $section' section" }
    }
    $out = [Collections.Generic.List[string]]::new()
    $out.Add('TOPIC'); $out.Add("    $expected"); $out.Add('')
    foreach ($entry in $doc.Sections.GetEnumerator()) {
        $out.Add($entry.Key.ToUpperInvariant())
        $parts = @(@{ Title = $null; Lines = $entry.Value.Lines }) + @($entry.Value.Subs)
        foreach ($part in $parts) {
            if ($part.Title) { $out.Add("  $($part.Title.ToUpperInvariant())"); $out.Add('') }
            foreach ($block in Split-Block $part.Lines) {
                if ($block.Kind -eq 'code') { $block.Text -split "`n" | ForEach-Object { $out.Add(("    $_").TrimEnd()) } }
                else { Format-Wrapped $block.Text 4 | ForEach-Object { $out.Add($_) } }
                $out.Add('')
            }
        }
    }
    ($out -join "`n").TrimEnd() + "`n"
}

Import-Module $ModulePath -Force
$module = Get-Module Kcopyd
$cmdlets = @($module.ExportedCmdlets.Values | Sort-Object Name)
# A command's doc is named Verb-Noun.md (design-notes.md is not one).
$docs = @(Get-ChildItem $DocsPath -Filter '*.md' | Where-Object BaseName -CMatch '^[A-Z][a-z]+-[A-Z]\w+$' | Sort-Object Name)
$names = @($cmdlets | ForEach-Object Name)
foreach ($orphan in $docs | ForEach-Object BaseName | Where-Object { $_ -notin $names }) { Add-Problem "$orphan.md" "documents $orphan, which the module does not export" }
$commands = foreach ($cmdlet in $cmdlets) {
    $path = Join-Path $DocsPath "$($cmdlet.Name).md"
    if (Test-Path $path) { Read-CommandDoc $path $cmdlet } else { Add-Problem "$($cmdlet.Name).md" "$($cmdlet.Name) has no doc in $DocsPath" }
}
$aboutPath = Join-Path $DocsPath 'about_Kcopyd.md'
$about = if (Test-Path $aboutPath) { ConvertTo-AboutText $aboutPath } else { Add-Problem 'about_Kcopyd.md' "is missing from $DocsPath" }
if ($Problems.Count) {
    # One line each on stderr (an error record's view would fold them into one paragraph).
    foreach ($problem in $Problems) { [Console]::Error.WriteLine($problem) }
    throw "The help in $DocsPath does not match the module: $($Problems.Count) problem(s), listed above."
}

New-Item -ItemType Directory $OutputPath -Force | Out-Null
$settings = [System.Xml.XmlWriterSettings]@{ Indent = $true; IndentChars = '  '; Encoding = [Text.UTF8Encoding]::new($false); NewLineChars = "`n" }
$xml = [System.Xml.XmlWriter]::Create((Join-Path $OutputPath 'Kcopyd.dll-Help.xml'), $settings)
try {
    $xml.WriteStartDocument()
    $xml.WriteStartElement('helpItems', 'http://msh')
    $xml.WriteAttributeString('schema', 'maml')
    foreach ($doc in $commands) { Write-Command $xml $doc }
    $xml.WriteEndElement()
    $xml.WriteEndDocument()
} finally { $xml.Dispose() }
[IO.File]::WriteAllText((Join-Path $OutputPath 'about_Kcopyd.help.txt'), $about, [Text.UTF8Encoding]::new($false))
Write-Host "Wrote the help of $($commands.Count) cmdlets and about_Kcopyd into $OutputPath"
