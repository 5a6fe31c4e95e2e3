namespace Kcopyd.Protocol;

/// <summary>
/// A device as the cmdlet names it to the host: a path the cmdlet resolved against its own location (the host
/// has none), what the user typed (a bare mirror name is one when no such file exists), or a mirror by name.
/// </summary>
public sealed class DeviceRef
{
    public string? Path { get; set; }
    public string? Text { get; set; }
    public string? Mirror { get; set; }

    public override string ToString() => Mirror != null ? $"mirror '{Mirror}'" : Text ?? Path ?? "";
}
