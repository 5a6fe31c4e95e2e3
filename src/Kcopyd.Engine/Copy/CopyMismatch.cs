namespace Kcopyd.Engine.Copy;

/// <summary>
/// A range of a destination that did not read back as the source (-Verify), in the destination's own byte offsets.
/// <see cref="Unreadable"/> is true when the re-read itself failed, so the range could not be checked.
/// </summary>
public sealed record CopyMismatch(string Destination, long Offset, long Length, bool Unreadable);
