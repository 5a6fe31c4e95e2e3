// The engine and these tests are Linux only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
