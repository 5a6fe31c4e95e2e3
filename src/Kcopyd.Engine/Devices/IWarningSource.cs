namespace Kcopyd.Engine.Devices;

/// <summary>
/// A device that can go wrong without failing a request (a mirror that loses a leg but answers from another):
/// a job writing to it reports what happened while it ran, so a degrading write is never just "Completed".
/// </summary>
public interface IWarningSource
{
    /// <summary>Warnings raised so far, ever: the number only grows.</summary>
    long WarningCount { get; }

    /// <summary>The warnings raised after the first <paramref name="count"/> (the newest ones, as many as are kept).</summary>
    string[] WarningsSince(long count);
}
