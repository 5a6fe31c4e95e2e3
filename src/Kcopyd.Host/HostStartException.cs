namespace Kcopyd.Host;

/// <summary>The host cannot start; the message says why in words an admin can act on.</summary>
public sealed class HostStartException(string message) : Exception(message);
