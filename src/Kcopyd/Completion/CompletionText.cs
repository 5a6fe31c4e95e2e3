using System.Management.Automation;

namespace Kcopyd.Completion;

/// <summary>The word being completed without its quotes, and completions quoted where the shell needs it.</summary>
internal static class CompletionText
{
    private const string NeedsQuotes = " \t$'\"`;(){}[],&|@#<>";

    /// <summary>What was typed, without the quote it was opened with (and closed with, if it was).</summary>
    public static string Unquote(string? word)
    {
        if (string.IsNullOrEmpty(word)) return "";
        char first = word[0];
        if (first is not ('\'' or '"')) return word;
        return word.Length > 1 && word[^1] == first ? word[1..^1] : word[1..];
    }

    /// <summary>Single-quoted when it holds a space or a character the shell would read otherwise.</summary>
    public static string Quote(string text)
        => text.Length > 0 && text.IndexOfAny(NeedsQuotes.ToCharArray()) < 0 && text[0] != '-'
            ? text
            : $"'{text.Replace("'", "''")}'";

    public static CompletionResult Result(string text, string listItem, CompletionResultType type, string toolTip)
        => new(Quote(text), listItem, type, toolTip.Length > 0 ? toolTip : listItem);
}
