using System.Management.Automation;

namespace Kcopyd.Session;

/// <summary>Picks objects by name with wildcards, as Get-Process does: a plain name that matches nothing is an error.</summary>
internal static class NameSelection
{
    public static List<T> Select<T>(PSCmdlet cmdlet, IReadOnlyList<T> all, string[]? names, Func<T, string> nameOf, string notFoundId, string what)
    {
        if (names == null) return [.. all];
        var found = new List<T>();
        foreach (string name in names)
        {
            var pattern = WildcardPattern.Get(name, WildcardOptions.IgnoreCase);
            var matches = all.Where(m => pattern.IsMatch(nameOf(m))).ToArray();
            if (matches.Length == 0 && !WildcardPattern.ContainsWildcardCharacters(name))
                cmdlet.WriteError(ErrorRecords.Create(notFoundId, ErrorCategory.ObjectNotFound, name, $"There is no {what} named '{name}'."));
            found.AddRange(matches.Where(m => !found.Any(f => nameOf(f) == nameOf(m))));
        }
        return found;
    }
}
