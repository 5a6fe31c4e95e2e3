namespace Kcopyd.Host.State;

/// <summary>One mirrors/*.json as the host found it: its definition, or why it cannot be used (the file is left alone).</summary>
public sealed record StoredMirror(string FileName, MirrorDefinition? Definition, string? Error);
