using System.Diagnostics;
using System.Security.Cryptography;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// A temporary folder of sparse image files and the loop devices attached over them, plus whatever a test hands
/// to <see cref="Track{T}"/>. Disposing disposes the tracked objects (last first), detaches every loop device and
/// deletes the folder, also when the test failed.
/// </summary>
public sealed class Scratch : IDisposable
{
    private readonly List<string> _loops = new();
    private readonly List<IDisposable> _tracked = new();

    public Scratch()
    {
        Folder = Path.Combine(Path.GetTempPath(), "kcopyd-test-" + Guid.NewGuid().ToString("N")[..12]);
        // 0700 whatever the umask: LogFileTests change the process umask while other classes run, and a mirror log
        // is refused in a folder others may write to.
        Directory.CreateDirectory(Folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(Folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public string Folder { get; }

    /// <summary>A sparse image file of the given size.</summary>
    public string Image(string name, long sizeBytes)
    {
        string path = Path.Combine(Folder, name);
        using var file = new FileStream(path, FileMode.CreateNew);
        file.SetLength(sizeBytes);
        return path;
    }

    /// <summary>A sparse image file with a loop device over it; returns the device path.</summary>
    public string Loop(string name, long sizeBytes, int? logicalBlockSize = null)
    {
        string image = Image(name, sizeBytes);
        string device = Attach(image, logicalBlockSize is { } b ? $"--sector-size {b}" : "");
        lock (_loops) _loops.Add(device);
        return device;
    }

    /// <summary>Attaches a loop device over a file (losetup --find --show) and returns its path; the caller detaches it.</summary>
    public static string Attach(string file, string options = "")
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return Run("losetup", $"--find --show {options} {file}").Trim();
            }
            catch (InvalidOperationException) when (attempt < 5)
            {
                // Another test took the free device between losetup's find and its attach.
                Thread.Sleep(50 * attempt);
            }
        }
    }

    /// <summary>Fills a region of a file or device with random bytes from a fixed seed.</summary>
    public static void FillRandom(string path, long offset, long length, int seed)
    {
        var random = new Random(seed);
        var buffer = new byte[1 << 20];
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        stream.Position = offset;
        for (long done = 0; done < length; done += buffer.Length)
        {
            random.NextBytes(buffer);
            stream.Write(buffer, 0, (int)Math.Min(buffer.Length, length - done));
        }
        stream.Flush(true);
    }

    public static byte[] Read(string path, long offset, long length)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        stream.Position = offset;
        var buffer = new byte[length];
        stream.ReadExactly(buffer);
        return buffer;
    }

    public static string Sha256(string path, long offset, long length) => Convert.ToHexString(SHA256.HashData(Read(path, offset, length)));

    /// <summary>Asserts two regions hold the same bytes, naming the first byte that differs.</summary>
    public static void AssertSameBytes(string expectedPath, long expectedOffset, string actualPath, long actualOffset, long length)
    {
        var expected = Read(expectedPath, expectedOffset, length);
        var actual = Read(actualPath, actualOffset, length);
        int i = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(i == length, $"{actualPath}+{actualOffset} differs from {expectedPath}+{expectedOffset} at byte {i} of {length}");
    }

    public static string Run(string file, string args)
    {
        var start = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{file} {args} failed ({process.ExitCode}): {error}");
        return output;
    }

    /// <summary>Disposes <paramref name="disposable"/> with the scratch, before the loop devices and after anything tracked later.</summary>
    public T Track<T>(T disposable) where T : IDisposable
    {
        lock (_tracked) _tracked.Add(disposable);
        return disposable;
    }

    public void Dispose()
    {
        for (int i = _tracked.Count - 1; i >= 0; i--) _tracked[i].Dispose();
        foreach (var device in _loops)
        {
            try { Run("losetup", $"-d {device}"); } catch (InvalidOperationException) { /* already gone */ }
        }
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
