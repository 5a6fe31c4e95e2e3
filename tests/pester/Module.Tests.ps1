BeforeAll {
    $script:Root = Resolve-Path "$PSScriptRoot/../.."
    $script:Manifest = Join-Path $Root 'Kcopyd.psd1'
}

Describe 'The Kcopyd module' {
    It 'has a manifest with real fields' {
        $info = Test-ModuleManifest $Manifest
        $info.Version | Should -BeGreaterThan ([version]'0.0')
        $info.Guid | Should -Not -Be ([guid]::Empty)
        $info.Author | Should -Not -BeNullOrEmpty
        $info.Description | Should -Not -BeNullOrEmpty
        $info.PowerShellVersion | Should -Be ([version]'7.4')
        $info.CompatiblePSEditions | Should -Be @('Core')
    }

    It 'imports from the repository root after a build and exports exactly the listed cmdlets' {
        $listed = (Import-PowerShellDataFile $Manifest).CmdletsToExport
        $module = Import-Module $Manifest -Force -PassThru
        try {
            @($module.ExportedCmdlets.Keys | Sort-Object) | Should -Be @($listed | Sort-Object)
        } finally { Remove-Module Kcopyd }
    }

    It 'makes the engine types usable from a script right after import' {
        $location = dotnet pwsh -NoProfile -Command "Import-Module '$Manifest'; [Kcopyd.Engine.Copy.CopyClient].Assembly.Location"
        $LASTEXITCODE | Should -Be 0
        $location | Should -BeLike '*/bin/Kcopyd.Engine.dll'
    }

    It 'packages into a folder that imports from any directory' {
        # build.ps1 Test packages before it runs this suite.
        $folder = Join-Path $Root 'out/Kcopyd'
        Join-Path $folder 'Kcopyd.psd1' | Should -Exist
        Join-Path $folder 'bin/Tmds.LibC.dll' | Should -Exist
        Join-Path $folder 'en-US' | Should -Exist
        $elsewhere = [IO.Path]::GetTempPath()
        $names = dotnet pwsh -NoProfile -Command "Set-Location '$elsewhere'; Import-Module '$folder'; (Get-Command -Module Kcopyd).Name -join ','"
        $LASTEXITCODE | Should -Be 0
        $names | Should -Match 'Start-RegionCopy'
        $names | Should -Match 'Get-CopyJob'
        $names | Should -Match 'Clear-Region'
    }
}
