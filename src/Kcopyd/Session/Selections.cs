using Kcopyd.Commands;
using Kcopyd.Engine.Mirror;
using Kcopyd.Protocol;

namespace Kcopyd.Session;

/// <summary>Finds the host's mirrors by name, with wildcards; a plain name that matches nothing is an error.</summary>
internal static class MirrorSelection
{
    public static IEnumerable<MirrorInfo> Select(HostCommand cmdlet, string[]? names)
        => NameSelection.Select(cmdlet, cmdlet.Call<MirrorInfo[]>(ControlMethods.GetMirrors), names, m => m.Name, "MirrorNotFound", "mirror device");
}

/// <summary>Finds the host's copy clients by name, with wildcards; a plain name that matches nothing is an error.</summary>
internal static class ClientSelection
{
    public static IEnumerable<CopyClientInfo> Select(HostCommand cmdlet, string[]? names)
        => NameSelection.Select(cmdlet, cmdlet.Call<CopyClientInfo[]>(ControlMethods.GetClients), names, c => c.Name, "ClientNotFound", "copy client");
}
