using System.Diagnostics;
using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Tests;

/// <summary>An image file opened for writing is locked against every other writer until it is disposed.</summary>
public sealed class ImageFileLockTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(30);
    private static readonly DeviceOpenOptions Forced = DeviceOpenOptions.ReadWrite with { Exclusive = false };
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_second_write_open_in_this_process_is_refused_as_in_use()
    {
        string image = _scratch.Image("leg.img", 1 * MiB);
        using var first = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite);

        AssertInUse(image);
    }

    [Fact]
    public void A_write_open_through_a_hard_link_is_refused_too()
    {
        string image = _scratch.Image("leg.img", 1 * MiB);
        string link = Path.Combine(_scratch.Folder, "other-name.img");
        Scratch.Run("ln", $"{image} {link}");
        using var first = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite);

        AssertInUse(link);
    }

    [Fact]
    public void Readers_and_forced_writers_are_not_blocked_and_take_no_lock()
    {
        string image = _scratch.Image("leg.img", 1 * MiB);
        using (var writer = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite))
        {
            using var reader = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadOnly);
            using var forced = LinuxBlockDevice.Open(image, Forced);
        }
        using var forcedAlone = LinuxBlockDevice.Open(image, Forced);
        using var writerAgain = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite);
    }

    [Fact]
    public void After_the_writer_is_disposed_the_file_opens_for_writing_again()
    {
        string image = _scratch.Image("leg.img", 1 * MiB);
        LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite).Dispose();

        using var again = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite);
    }

    [Fact]
    public void A_write_lock_held_by_another_process_refuses_our_writer_until_that_process_lets_go()
    {
        string image = _scratch.Image("leg.img", 1 * MiB);
        using (var other = OfdLocker.Start(image))
        {
            Assert.Equal("locked", other.Answer);
            AssertInUse(image);
        }
        using var ours = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite);
    }

    [Fact]
    public void Our_write_lock_refuses_another_process_that_asks_for_one()
    {
        string image = _scratch.Image("leg.img", 1 * MiB);
        using var ours = LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite);
        using var other = OfdLocker.Start(image);

        Assert.StartsWith("busy", other.Answer);
    }

    private static void AssertInUse(string path)
    {
        var error = Assert.Throws<KcopydException>(() => LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite).Dispose());
        Assert.Equal("DeviceInUse", error.ErrorId);
        Assert.Equal(KcopydErrorKind.ResourceBusy, error.Kind);
    }

    /// <summary>
    /// Another process asking for an OFD write lock on the whole file with F_OFD_SETLK (37), as the engine does.
    /// perl, because it can call fcntl with a struct flock (flock(1) takes BSD locks, which do not meet OFD ones).
    /// It answers "locked" and holds the lock until disposed, or "busy &lt;reason&gt;" and exits.
    /// </summary>
    private sealed class OfdLocker : IDisposable
    {
        private const string Script =
            "$| = 1; alarm 60; open(my $f, '+<', $ARGV[0]) or die \"open: $!\"; " +
            "my $whole = pack('s s x4 q q i x4', 1, 0, 0, 0, 0); " + // F_WRLCK, SEEK_SET, start 0, length 0 (to the end)
            "if (fcntl($f, 37, $whole)) { print \"locked\\n\"; <STDIN>; } else { print \"busy $!\\n\"; }";

        private readonly Process _process;

        private OfdLocker(Process process, string answer)
        {
            _process = process;
            Answer = answer;
        }

        public string Answer { get; }

        public static OfdLocker Start(string file)
        {
            var start = new ProcessStartInfo("perl") { RedirectStandardInput = true, RedirectStandardOutput = true };
            start.ArgumentList.Add("-e");
            start.ArgumentList.Add(Script);
            start.ArgumentList.Add(file);
            var process = Process.Start(start)!;
            var line = process.StandardOutput.ReadLineAsync();
            if (!line.Wait(Bounded))
            {
                process.Kill();
                process.Dispose();
                throw new TimeoutException("perl did not answer");
            }
            return new OfdLocker(process, line.Result ?? "no answer");
        }

        public void Dispose()
        {
            _process.StandardInput.Close();
            if (!_process.WaitForExit(Bounded)) _process.Kill();
            _process.Dispose();
        }
    }
}
