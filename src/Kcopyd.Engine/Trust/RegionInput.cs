using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Trust;

/// <summary>One device of a compare or a hash, and where its region starts on it.</summary>
public sealed record RegionInput(IBlockDevice Device, long OffsetBytes);
