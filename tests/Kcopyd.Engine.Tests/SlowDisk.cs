using System.Diagnostics;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// A real block device whose reads are slow: nbdkit serves an in-memory disk through its delay filter, nbdfuse
/// exposes it as a file, losetup makes that a /dev/loopN (as <see cref="FaultyDisk"/> does for failures). Writes
/// are not delayed. Disposing detaches and unmounts everything.
/// </summary>
public sealed class SlowDisk : IDisposable
{
    private readonly Process _nbdfuse;
    private readonly string _mountPoint;

    /// <param name="readDelay">nbdkit's rdelay, e.g. "500ms".</param>
    public SlowDisk(string folder, long sizeBytes, string readDelay)
    {
        _mountPoint = Path.Combine(folder, "slow-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_mountPoint);
        string disk = Path.Combine(_mountPoint, "disk");
        var start = new ProcessStartInfo("nbdfuse") { RedirectStandardError = true };
        foreach (string arg in new[] { disk, "[", "nbdkit", "--filter=delay", "memory", sizeBytes.ToString(), $"rdelay={readDelay}", "]" })
            start.ArgumentList.Add(arg);
        _nbdfuse = Process.Start(start)!;
        var deadline = Stopwatch.StartNew();
        while (!File.Exists(disk))
        {
            if (_nbdfuse.HasExited || deadline.Elapsed > TimeSpan.FromSeconds(20))
            {
                Dispose();
                throw new InvalidOperationException($"nbdfuse did not come up: {(_nbdfuse.HasExited ? _nbdfuse.StandardError.ReadToEnd() : "timeout")}");
            }
            Thread.Sleep(20);
        }
        try
        {
            // --direct-io=on: reads must reach nbdkit (and its delay), not a page cache on the way.
            Device = Scratch.Attach(disk, "--direct-io=on");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The /dev/loopN over the slow disk.</summary>
    public string Device { get; } = "";

    public void Dispose()
    {
        if (Device.Length > 0)
        {
            try { Scratch.Run("losetup", $"-d {Device}"); } catch (InvalidOperationException) { }
        }
        try { Scratch.Run("fusermount3", $"-u {_mountPoint}"); } catch (InvalidOperationException) { }
        if (!_nbdfuse.WaitForExit(10_000)) _nbdfuse.Kill(entireProcessTree: true);
        _nbdfuse.Dispose();
        try { Directory.Delete(_mountPoint); } catch (IOException) { }
    }
}
