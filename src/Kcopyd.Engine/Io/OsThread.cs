using System.Runtime.InteropServices;

namespace Kcopyd.Engine.Io;

/// <summary>
/// The kernel's id of the calling thread. Queues record the ids of their threads so a test can see in
/// /proc/self/task that a disposed queue left none behind (managed thread ids say nothing about the OS thread).
/// </summary>
internal static partial class OsThread
{
    [LibraryImport("libc", EntryPoint = "gettid")]
    public static partial int CurrentId();
}
