@{
    RootModule           = 'bin/Kcopyd.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = 'c60233f9-68ca-4308-9883-d2d2ed0f3771'
    Author               = 'Kcopyd developers'
    CompanyName          = 'Kcopyd'
    Copyright            = '(c) Kcopyd developers.'
    Description          = 'Region copies (dm-kcopyd) and mirrors (dm-raid1) over Linux block devices and image files, as cmdlets.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    # Loaded on import, so scripts can use the engine's and the protocol's types ([Kcopyd.Engine.Copy.CopyJobState]) straight away.
    RequiredAssemblies   = @('bin/Kcopyd.Engine.dll', 'bin/Kcopyd.Protocol.dll')
    FormatsToProcess     = @('bin/Kcopyd.format.ps1xml')
    CmdletsToExport      = @(
        'Start-RegionCopy'
        'Get-CopyJob'
        'Wait-CopyJob'
        'Stop-CopyJob'
        'Remove-CopyJob'
        'Clear-Region'
        'Compare-Region'
        'Get-RegionHash'
        'New-CopyClient'
        'Get-CopyClient'
        'Set-CopyClient'
        'Remove-CopyClient'
        'New-MirrorDevice'
        'Get-MirrorDevice'
        'Wait-MirrorDevice'
        'Set-MirrorDevice'
        'Remove-MirrorDevice'
        'Repair-MirrorDevice'
        'Add-MirrorLeg'
        'Remove-MirrorLeg'
        'Test-MirrorDevice'
        'Publish-MirrorDevice'
        'Unpublish-MirrorDevice'
        'Get-KcopydHost'
        'Set-KcopydHost'
        'Stop-KcopydHost'
    )
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    PrivateData          = @{
        PSData = @{
            Tags       = @('Linux', 'BlockDevice', 'Storage', 'Mirror', 'kcopyd', 'dm-raid1')
        }
    }
}
