namespace Kcopyd.Host.State;

/// <summary>settings.json in the state directory: how much job history the host keeps; a missing file means these defaults.</summary>
public sealed class HostSettings
{
    public int JobHistoryCount { get; set; } = 1000;

    /// <summary>Written as TimeSpan's constant format, "1.00:00:00" for a day.</summary>
    public TimeSpan JobHistoryMaxAge { get; set; } = TimeSpan.FromHours(24);
}
