// The host is Linux only: Unix sockets with SO_PEERCRED, file modes, the engine's io_uring.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
