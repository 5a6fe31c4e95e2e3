#!/usr/bin/env bash
# The experiment behind "Kcopyd host (groundwork)" in docs/design-notes.md: a net8.0 class library referencing
# StreamJsonRpc, imported into the repository's pwsh 7.6, calls GetHost on a net8.0 server over a Unix socket.
#   run.sh <version>   the plain module (everything in the default load context), e.g. 2.26.150 or 2.25.29
#   run.sh conflict    an older Microsoft.VisualStudio.Threading (17.14, from 2.25.29) loaded first, as another
#                      module in the session could, then the 2.26.150 module: plain, and isolated in its own ALC
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../../.." && pwd); out=${TMPDIR:-/tmp}/kcopyd-rpc-spike
publish() { dotnet publish "$here/$1" -p:RpcVersion="$2" -o "$3" --nologo -v q >/dev/null; }
serve() { publish server "$1" "$out/$1/server"; rm -f "$out/$1.sock"; dotnet "$out/$1/server/server.dll" "$out/$1.sock" >/dev/null & server=$!
          trap 'kill $server' EXIT; for _ in $(seq 100); do [ -S "$out/$1.sock" ] && return; sleep 0.1; done; }
pwsh() { (cd "$repo" && dotnet pwsh -NoProfile -c "$1"); }
report='try { Get-SpikeHost -Path SOCK | Format-List | Out-String | Write-Host } catch { $e = $_.Exception; while ($e) { Write-Host ("FAILED: {0}: {1}" -f $e.GetType().FullName, $e.Message); $e = $e.InnerException } }
[AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -match "StreamJsonRpc|VisualStudio|Nerdbank|PolyType|MessagePack|Newtonsoft|Pipelines|Immutable|^core$|^client$" } |
  ForEach-Object { "  {0} {1} ALC={2} {3}" -f $_.GetName().Name, $_.GetName().Version, [Runtime.Loader.AssemblyLoadContext]::GetLoadContext($_).Name, $_.Location } | Write-Host'
if [ "$1" != conflict ]; then
    publish client "$1" "$out/$1/client"; serve "$1"
    pwsh "Import-Module $out/$1/client/client.dll; ${report//SOCK/$out/$1.sock}"
else
    publish client 2.25.29 "$out/2.25.29/client"; publish client 2.26.150 "$out/2.26.150/client"; serve 2.26.150
    dotnet publish "$here/alc/core" -o "$out/alc/deps" --nologo -v q >/dev/null
    dotnet publish "$here/alc/shim" -o "$out/alc" --nologo -v q >/dev/null
    # Only the shim sits beside the module; what it would copy of core's packages belongs in deps/ alone.
    find "$out/alc" -mindepth 1 -maxdepth 1 ! -name shim.dll ! -name deps -exec rm -r {} +
    first="Add-Type -Path $out/2.25.29/client/Microsoft.VisualStudio.Threading.dll"
    echo "== plain module"; pwsh "$first; Import-Module $out/2.26.150/client/client.dll; ${report//SOCK/$out/2.26.150.sock}"
    echo "== module with its RPC client in an AssemblyLoadContext of its own"
    pwsh "$first; Import-Module $out/alc/shim.dll; ${report//SOCK/$out/2.26.150.sock}"
fi
