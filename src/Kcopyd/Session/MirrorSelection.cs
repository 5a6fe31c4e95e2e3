using System.Management.Automation;
using Kcopyd.Commands;
using Kcopyd.Engine.Mirror;
using Kcopyd.Protocol;

namespace Kcopyd.Session;

/// <summary>Finds the host's mirrors by name, with wildcards; a plain name that matches nothing is an error.</summary>
internal static class MirrorSelection
{
    public static IEnumerable<MirrorStatus> Select(HostCommand cmdlet, string[]? names)
    {
        var all = cmdlet.Call<MirrorStatus[]>(ControlMethods.GetMirrors);
        if (names == null) return all;
        var found = new List<MirrorStatus>();
        foreach (string name in names)
        {
            var pattern = WildcardPattern.Get(name, WildcardOptions.IgnoreCase);
            var matches = all.Where(m => pattern.IsMatch(m.Name)).ToArray();
            if (matches.Length == 0 && !WildcardPattern.ContainsWildcardCharacters(name))
                cmdlet.WriteError(ErrorRecords.Create("MirrorNotFound", ErrorCategory.ObjectNotFound, name, $"There is no mirror device named '{name}'."));
            found.AddRange(matches.Where(m => !found.Any(f => f.Name == m.Name)));
        }
        return found;
    }
}
