using System.Diagnostics;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// A real block device that fails on demand (see shared FAULTS.md): nbdkit serves an in-memory disk through its
/// error filter, nbdfuse exposes it as a file, losetup makes that a /dev/loopN. Reads or writes fail with EIO
/// while their trigger file exists. Disposing detaches and unmounts everything.
/// </summary>
public sealed class FaultyDisk : IDisposable
{
    private readonly Process _nbdfuse;
    private readonly string _mountPoint;
    private readonly string _writeTrigger;
    private readonly string _readTrigger;

    /// <summary>An in-memory disk whose reads and writes fail while <see cref="FailReads"/> / <see cref="FailWrites"/> say so.</summary>
    public FaultyDisk(string folder, long sizeBytes) : this(folder, ["memory", sizeBytes.ToString()], [])
    {
    }

    private FaultyDisk(string folder, string[] plugin, string[] filters)
    {
        string name = "faulty-" + Guid.NewGuid().ToString("N")[..8];
        _mountPoint = Path.Combine(folder, name);
        _writeTrigger = Path.Combine(folder, name + ".wfail");
        _readTrigger = Path.Combine(folder, name + ".rfail");
        Directory.CreateDirectory(_mountPoint);
        string disk = Path.Combine(_mountPoint, "disk");
        var start = new ProcessStartInfo("nbdfuse")
        {
            RedirectStandardError = true,
        };
        foreach (string arg in new[] { disk, "[", "nbdkit", "--filter=error" }.Concat(filters).Concat(plugin))
            start.ArgumentList.Add(arg);
        foreach (string arg in new[]
                 {
                     "error-pwrite=EIO", "error-pwrite-rate=100%", $"error-pwrite-file={_writeTrigger}",
                     "error-pread=EIO", "error-pread-rate=100%", $"error-pread-file={_readTrigger}", "]",
                 })
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
        // --direct-io=on: the loop driver must pass our requests straight to the FUSE file so errors reach us.
        try
        {
            Device = Scratch.Attach(disk, "--direct-io=on");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>An in-memory disk whose every read takes <paramref name="readDelay"/> (nbdkit's rdelay, e.g. "500ms").</summary>
    public static FaultyDisk WithSlowReads(string folder, long sizeBytes, string readDelay)
        => new(folder, ["memory", sizeBytes.ToString(), $"rdelay={readDelay}"], ["--filter=delay"]);

    /// <summary>
    /// An in-memory disk that hangs on demand (nbdkit's pause filter): every request waits from <see cref="Pause"/>
    /// until <see cref="Resume"/>, as a disk that stopped answering and came back does.
    /// </summary>
    public static FaultyDisk Pausable(string folder, long sizeBytes)
    {
        string socket = Path.Combine(folder, "pause-" + Guid.NewGuid().ToString("N")[..8] + ".sock");
        return new FaultyDisk(folder, ["memory", sizeBytes.ToString(), $"pause-control={socket}"], ["--filter=pause"]) { PauseSocket = socket };
    }

    private string? PauseSocket { get; init; }

    /// <summary>From now on the disk's requests hang (those it is serving end first).</summary>
    public void Pause() => SendPause('p', 'P');

    public void Resume() => SendPause('r', 'R');

    private void SendPause(char command, char answer)
    {
        using var client = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        client.ReceiveTimeout = 10000;
        client.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(PauseSocket!));
        client.Send([(byte)command]);
        var reply = new byte[1];
        if (client.Receive(reply) != 1 || reply[0] != answer) throw new InvalidOperationException($"nbdkit's pause filter did not answer '{answer}' to '{command}'.");
    }

    /// <summary>
    /// A read-only disk serving <paramref name="image"/> whose reads fail with EIO inside <paramref name="badRanges"/>
    /// (offset, length in bytes), through nbdkit's ddrescue filter: bad sectors at exact places.
    /// </summary>
    public static FaultyDisk WithBadSectors(string folder, string image, params (long Offset, long Length)[] badRanges)
    {
        long size = new FileInfo(image).Length;
        var lines = new List<string> { "# Mapfile", "0x0 +", "#      pos        size  status" };
        long at = 0;
        foreach (var (offset, length) in badRanges.OrderBy(r => r.Offset))
        {
            if (offset > at) lines.Add($"0x{at:X} 0x{offset - at:X} +");
            lines.Add($"0x{offset:X} 0x{length:X} -");
            at = offset + length;
        }
        if (at < size) lines.Add($"0x{at:X} 0x{size - at:X} +");
        string map = Path.Combine(folder, Path.GetFileName(image) + ".map");
        File.WriteAllLines(map, lines);
        return new FaultyDisk(folder, ["file", $"file={image}", $"ddrescue-mapfile={map}"], ["--filter=ddrescue"]);
    }

    /// <summary>The /dev/loopN over the faulty disk.</summary>
    public string Device { get; } = "";

    public void FailWrites(bool fail) => Trigger(_writeTrigger, fail);

    public void FailReads(bool fail) => Trigger(_readTrigger, fail);

    private static void Trigger(string path, bool fail)
    {
        if (fail) File.WriteAllText(path, "");
        else File.Delete(path);
    }

    /// <summary>
    /// The loop driver lets go of the FUSE file a moment after losetup -d returns, so the unmount is tried a few
    /// times, and lazily at last: a mount must never outlive its test.
    /// </summary>
    private static void Unmount(string mountPoint)
    {
        for (int attempt = 1; attempt <= 5; attempt++)
        {
            try
            {
                Scratch.Run("fusermount3", $"-u {mountPoint}");
                return;
            }
            catch (InvalidOperationException)
            {
                Thread.Sleep(100 * attempt);
            }
        }
        try { Scratch.Run("fusermount3", $"-uz {mountPoint}"); } catch (InvalidOperationException) { }
    }

    public void Dispose()
    {
        FailWrites(false);
        FailReads(false);
        if (Device.Length > 0)
        {
            try { Scratch.Run("losetup", $"-d {Device}"); } catch (InvalidOperationException) { }
        }
        Unmount(_mountPoint);
        if (!_nbdfuse.WaitForExit(10_000)) _nbdfuse.Kill(entireProcessTree: true);
        _nbdfuse.Dispose();
        try { Directory.Delete(_mountPoint); } catch (IOException) { }
    }
}
