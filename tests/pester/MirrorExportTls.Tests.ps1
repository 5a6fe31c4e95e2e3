BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../../Kcopyd.psd1" -Force
    Use-TestHost | Out-Null
}

AfterAll {
    Remove-TestLoopDevices   # stops the file's host first: its exports end, its mirrors close
    Remove-Module Kcopyd -ErrorAction Ignore
}

Describe 'Publish-MirrorDevice -TlsCertificateDirectory' {
    BeforeAll {
        $script:Legs = @(New-TestLoopDevice -Name 'tls-a.img' -Size 16MB; New-TestLoopDevice -Name 'tls-b.img' -Size 16MB)
        New-MirrorDevice tls1 $script:Legs -RegionSize 256KB -Confirm:$false | Out-Null
        (Wait-MirrorDevice tls1 -TimeoutSeconds 60).State | Should -Be 'InSync'
        $script:TlsFolder = Split-Path (New-TestImage -Name 'tls-marker' -Size 0)
        $script:Pki = Join-Path $script:TlsFolder 'pki'
        New-TestPki $script:Pki
    }
    AfterAll { Remove-MirrorDevice tls1 -Force -Confirm:$false -ErrorAction Ignore }

    It 'refuses a missing directory, a missing file and a key every user may read, before serving anything' {
        { Publish-MirrorDevice tls1 -TlsCertificateDirectory (Join-Path $script:TlsFolder 'nowhere') -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'TlsCertificatesNotFound*'
        $partial = Join-Path $script:TlsFolder 'pki-partial'
        New-Item -ItemType Directory $partial | Out-Null
        Copy-Item "$script:Pki/server-cert.pem", "$script:Pki/server-key.pem" $partial
        $err = { Publish-MirrorDevice tls1 -TlsCertificateDirectory $partial -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'TlsCertificatesNotFound*' -PassThru
        $err.Exception.Message | Should -Match 'ca-cert\.pem'
        $readable = Join-Path $script:TlsFolder 'pki-readable'
        Copy-Item $script:Pki $readable -Recurse
        chmod 644 "$readable/server-key.pem"
        $err = { Publish-MirrorDevice tls1 -TlsCertificateDirectory $readable -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'TlsKeyReadableByOthers*' -PassThru
        $err.Exception.Message | Should -Match 'server-key\.pem'
        { Publish-MirrorDevice tls1 -TlsAnyClient -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'TlsAnyClientWithoutTls*'
        @((Get-MirrorDevice tls1).Exports).Count | Should -Be 0
    }

    It 'serves nbds+unix: nbdcopy writes and reads it back, a plain client is refused, and Start-RegionCopy copies from the nbds URI' {
        $export = Publish-MirrorDevice tls1 -TlsCertificateDirectory $script:Pki -Confirm:$false
        $export.Uri | Should -Be "nbds+unix:///?socket=$($export.UnixSocket)"
        $uri = "$($export.Uri)&tls-certificates=$script:Pki"

        $data = New-TestImage -Name 'tls-data.bin' -Size 16MB
        $back = New-TestImage -Name 'tls-back.bin' -Size 16MB
        Write-RandomRegion -Path $data -Offset 0 -Length 16MB -Seed 1301
        nbdcopy --requests=16 $data $uri
        $LASTEXITCODE | Should -Be 0
        nbdcopy $uri $back
        $LASTEXITCODE | Should -Be 0
        $expected = Get-TestSha256 $data 0 16MB
        Get-TestSha256 $back 0 16MB | Should -Be $expected
        foreach ($leg in $script:Legs) { Get-TestSha256 $leg 0 16MB | Should -Be $expected -Because "$leg is a leg" }

        $plain = nbdinfo --size "nbd+unix:///?socket=$($export.UnixSocket)" 2>&1
        $LASTEXITCODE | Should -Not -Be 0
        "$plain" | Should -Match 'requires TLS'

        # The host's own NBD client reads the export over TLS, showing the directory's client certificate.
        $target = New-TestLoopDevice -Name 'tls-target.img' -Size 16MB
        $job = Start-RegionCopy $uri $target -Length 16MB -Wait -Confirm:$false
        $job.State | Should -Be 'Completed'
        Get-TestSha256 $target 0 16MB | Should -Be $expected
        Unpublish-MirrorDevice tls1 -Confirm:$false | Out-Null
    }

    It 'refuses -BlockDevice with TLS, and a second, plain publication on the private socket gives the block device beside the TLS export' {
        $err = { Publish-MirrorDevice tls1 -TlsCertificateDirectory $script:Pki -BlockDevice -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'TlsBlockDeviceUnsupported*' -PassThru
        $err.Exception.Message | Should -Match 'a second time'
        $tls = Publish-MirrorDevice tls1 -UnixSocket (Join-Path $env:KCOPYD_RUNTIME_DIR 'exports/tls1-tls.sock') -TlsCertificateDirectory $script:Pki -Confirm:$false
        $local = Publish-MirrorDevice tls1 -BlockDevice -Confirm:$false
        try {
            $tls.Uri | Should -Match '^nbds\+unix:'
            $local.BlockDevice | Should -Match '^/dev/loop\d+$'
            $expected = Get-TestSha256 $script:Legs[0] 0 16MB
            Get-TestSha256 $local.BlockDevice 0 16MB | Should -Be $expected
            nbdinfo --size "$($tls.Uri)&tls-certificates=$script:Pki" | Should -Be 16MB
        } finally {
            Unpublish-MirrorDevice tls1 -Force -Confirm:$false | Out-Null
        }
    }

    It 'is served with TLS again by a restarted host' {
        $export = Publish-MirrorDevice tls1 -TlsCertificateDirectory $script:Pki -Confirm:$false
        try {
            Stop-KcopydHost -Force -Confirm:$false -TimeoutSeconds 30
            (Get-MirrorDevice tls1).Exports | Should -Be @($export.Uri)
            Update-TestHost | Out-Null
            $plain = nbdinfo --size "nbd+unix:///?socket=$($export.UnixSocket)" 2>&1
            "$plain" | Should -Match 'requires TLS' -Because 'the restarted host must not serve a TLS publication in the clear'
            nbdinfo --size "$($export.Uri)&tls-certificates=$script:Pki" | Should -Be 16MB
        } finally {
            Unpublish-MirrorDevice tls1 -Force -Confirm:$false | Out-Null
        }
    }
}
