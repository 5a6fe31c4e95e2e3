using System.Management.Automation;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Session;

/// <summary>Finds the session's mirrors by name, with wildcards; a plain name that matches nothing is an error.</summary>
internal static class MirrorSelection
{
    public static IEnumerable<MirrorDevice> Select(PSCmdlet cmdlet, string[]? names)
    {
        if (names == null) return KcopydSession.Mirrors.ToArray();
        var found = new List<MirrorDevice>();
        foreach (string name in names)
        {
            var pattern = WildcardPattern.Get(name, WildcardOptions.IgnoreCase);
            var matches = KcopydSession.Mirrors.Where(m => pattern.IsMatch(m.Name)).ToArray();
            if (matches.Length == 0 && !WildcardPattern.ContainsWildcardCharacters(name))
                cmdlet.WriteError(ErrorRecords.Create("MirrorNotFound", ErrorCategory.ObjectNotFound, name, $"There is no mirror device named '{name}'."));
            found.AddRange(matches.Where(m => !found.Contains(m)));
        }
        return found;
    }
}
