using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.Versioning;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;
using Tmds.Linux;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// Alone, not beside other test classes: the tests count this process's descriptors, and change the umask and the
/// current directory, which are the whole process's.
/// </summary>
[CollectionDefinition(nameof(LogFileTests), DisableParallelization = true)]
public sealed class LogFileCollection { }

[Collection(nameof(LogFileTests))]
[SupportedOSPlatform("linux")]
public sealed class LogFileTests : IDisposable
{
    private const string Nobody = "65534";
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(20);
    private readonly Scratch _scratch = new();
    private readonly string _sticky;   // like /tmp: anyone may add names, only a name's owner may remove it
    private readonly string _rootOnly; // like /root

    public LogFileTests()
    {
        // The first open maps Tmds.LibC and the like: done here, so descriptors counted around an open are the open's.
        Assert.Throws<KcopydException>(() => LogFile.Open("/dev/null", createIfMissing: false));
        File.SetUnixFileMode(_scratch.Folder, (UnixFileMode)0x1ED); // 0755 whatever the umask: a log may only be reached through it then
        _sticky = Dir("sticky", UnixFileMode.StickyBit | (UnixFileMode)0x1FF);
        _rootOnly = Dir("root-only", UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData(0x000)] // umask 000: 0600 is asked for, not 0666 trimmed by the umask
    [InlineData(0x0BF)] // umask 277: the umask took the owner's write bit, fchmod gives it back
    public void A_missing_log_is_created_0600_whatever_the_umask_and_its_handle_reads_and_writes(int umask)
    {
        string path = Path.Combine(_sticky, "new.log");
        LogFile log;
        var saved = LibC.umask((ushort)umask);
        try
        {
            log = LogFile.Open(path, createIfMissing: true);
        }
        finally
        {
            LibC.umask(saved);
        }
        using (log)
        {
            Assert.True(log.Created);
            Assert.Equal(path, log.Path);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            var (dev, ino) = DevIno(path);
            Assert.Equal(new DeviceIdentity(DeviceKind.ImageFile, dev, ino), log.Identity);
            Assert.Equal(dev, log.FilesystemDevice);
            RandomAccess.Write(log.Handle, "KCPYDLOG"u8, 4096);
            var back = new byte[8];
            Assert.Equal(8, RandomAccess.Read(log.Handle, back, 4096));
            Assert.Equal("KCPYDLOG"u8.ToArray(), back);
        }
    }

    [Fact]
    public void A_created_log_survives_a_crash_right_after_Open_and_knows_the_disk_under_its_filesystem()
    {
        // The loop device's backing file holds exactly what the filesystem sent to its disk, so a copy of it taken
        // now is the disk a power cut would leave; mounting the copy replays the journal as a reboot would.
        string image = Path.Combine(_scratch.Folder, "fs.img");
        string device = _scratch.Loop("fs.img", 64 << 20);
        Scratch.Run("mkfs.ext4", $"-q -F -E lazy_itable_init=0,lazy_journal_init=0 {device}");
        string live = Dir("live", (UnixFileMode)0x1ED);
        Scratch.Run("mount", $"-o commit=600 {device} {live}"); // no timed journal commit during the test
        _scratch.Track(new Undo(() => Unmount(live)));

        using (var log = LogFile.Open(Path.Combine(live, "mirror.log"), createIfMissing: true))
        using (var disk = LinuxBlockDevice.Open(device, DeviceOpenOptions.ReadOnly))
        {
            Assert.True(log.Created);
            Assert.Equal(disk.Identity.Device, log.FilesystemDevice); // what a mirror compares with its legs
        }
        File.WriteAllText(Path.Combine(live, "control"), "created without fsync");

        string crashedImage = Path.Combine(_scratch.Folder, "crashed.img");
        File.Copy(image, crashedImage);
        string crashedDevice = Scratch.Attach(crashedImage);
        _scratch.Track(new Undo(() => Scratch.Run("losetup", $"-d {crashedDevice}")));
        string rebooted = Dir("rebooted", (UnixFileMode)0x1ED);
        Scratch.Run("mount", $"{crashedDevice} {rebooted}");
        _scratch.Track(new Undo(() => Unmount(rebooted)));

        Assert.False(File.Exists(Path.Combine(rebooted, "control")), "a file nobody fsync'ed survived, so the copy is no crash");
        Assert.True(File.Exists(Path.Combine(rebooted, "mirror.log")), "the log Open created was lost in the crash");
    }

    [Fact]
    public void An_existing_0644_log_is_opened_as_it_is_and_becomes_0600()
    {
        string path = Path.Combine(_sticky, "old.log");
        File.WriteAllBytes(path, "earlier bitmap"u8.ToArray());
        File.SetUnixFileMode(path, (UnixFileMode)0x1A4);

        using var log = LogFile.Open(path, createIfMissing: true);

        Assert.False(log.Created);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        var bytes = new byte[14];
        Assert.Equal(14, RandomAccess.Read(log.Handle, bytes, 0));
        Assert.Equal("earlier bitmap"u8.ToArray(), bytes);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_link_another_user_planted_in_a_sticky_directory_cannot_point_the_log_at_a_disk(bool createIfMissing)
    {
        string disk = _scratch.Loop("disk.img", 1 << 20);
        Scratch.FillRandom(disk, 0, 4096, seed: 7);
        string before = Scratch.Sha256(disk, 0, 4096);
        string link = Path.Combine(_sticky, "mirror.log");
        AsNobody($"ln -s {disk} {link}");

        var refusal = Refused(link, createIfMissing);

        Assert.Contains($"'{link}' is a symbolic link owned by uid {Nobody}", refusal.Message);
        Assert.Equal(before, Scratch.Sha256(disk, 0, 4096));
    }

    [Fact]
    public void A_link_another_user_planted_cannot_make_root_create_a_file_in_a_root_only_directory()
    {
        string link = Path.Combine(_sticky, "mirror.log");
        AsNobody($"ln -s {Path.Combine(_rootOnly, "planted")} {link}");

        var refusal = Refused(link, createIfMissing: true);

        Assert.Contains($"uid {Nobody}", refusal.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_rootOnly));
    }

    [Fact]
    public void A_link_another_user_planted_as_a_directory_on_the_way_is_refused()
    {
        string link = Path.Combine(_sticky, "logs");
        AsNobody($"ln -s {_rootOnly} {link}");

        var refusal = Refused(Path.Combine(link, "mirror.log"), createIfMissing: true);

        Assert.Contains($"'{link}' is a symbolic link owned by uid {Nobody}", refusal.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_rootOnly));
    }

    [Fact]
    public void Links_root_made_are_followed_absolute_relative_and_on_the_way()
    {
        string target = Path.Combine(_rootOnly, "real.log");
        File.CreateSymbolicLink(Path.Combine(_sticky, "absolute.log"), target);
        File.CreateSymbolicLink(Path.Combine(_sticky, "relative.log"), "../root-only/real.log");
        Directory.CreateSymbolicLink(Path.Combine(_sticky, "logs"), _rootOnly);

        using (var created = LogFile.Open(Path.Combine(_sticky, "absolute.log"), createIfMissing: true))
        {
            Assert.True(created.Created);
            var (dev, ino) = DevIno(target);
            Assert.Equal(new DeviceIdentity(DeviceKind.ImageFile, dev, ino), created.Identity);
        }
        foreach (string path in new[] { "relative.log", "logs/real.log" })
        {
            using var log = LogFile.Open(Path.Combine(_sticky, path), createIfMissing: false);
            Assert.False(log.Created);
            Assert.Equal(DevIno(target), (log.Identity.Device, log.Identity.Inode));
        }
    }

    [Fact]
    public void A_relative_path_is_walked_from_the_current_directory()
    {
        string saved = Environment.CurrentDirectory;
        try
        {
            Environment.CurrentDirectory = _sticky;
            using var log = LogFile.Open("relative.log", createIfMissing: true);
            Assert.Equal(DevIno(Path.Combine(_sticky, "relative.log")), (log.Identity.Device, log.Identity.Inode));
        }
        finally
        {
            Environment.CurrentDirectory = saved;
        }
    }

    [Fact]
    public void A_directory_another_user_owns_is_refused_and_gains_no_file()
    {
        string theirs = Dir("theirs", (UnixFileMode)0x1ED);
        Scratch.Run("chown", $"{Nobody}:{Nobody} {theirs}");

        var refusal = Refused(Path.Combine(theirs, "mirror.log"), createIfMissing: true);

        Assert.Contains($"the directory '{theirs}' is owned by uid {Nobody}", refusal.Message);
        Assert.Empty(Directory.GetFileSystemEntries(theirs));
    }

    [Theory]
    [InlineData(0x1FF, "writable by its group and others")] // 0777
    [InlineData(0x1F8, "writable by its group")]            // 0770
    public void A_root_directory_others_can_write_without_the_sticky_bit_is_refused(int mode, string who)
    {
        string open = Dir("open", (UnixFileMode)mode);

        var refusal = Refused(Path.Combine(open, "mirror.log"), createIfMissing: true);

        Assert.Contains($"the directory '{open}' (mode 0{Convert.ToString(mode, 8)}) is {who} and not sticky", refusal.Message);
        Assert.Empty(Directory.GetFileSystemEntries(open));
    }

    [Theory]
    [InlineData("block device", true)]
    [InlineData("block device", false)]
    [InlineData("character device", true)]
    [InlineData("FIFO (named pipe)", true)]
    [InlineData("FIFO (named pipe)", false)]
    [InlineData("directory", true)]
    [InlineData("socket", true)]
    public void Anything_but_a_regular_file_is_refused(string kind, bool createIfMissing)
    {
        string? disk = null;
        Socket? socket = null;
        string path = kind switch
        {
            "block device" => disk = _scratch.Loop("disk.img", 1 << 20),
            "character device" => "/dev/null",
            "FIFO (named pipe)" => Fifo(),
            "directory" => Dir("a-directory", (UnixFileMode)0x1ED),
            "socket" => Path.Combine(_sticky, "socket"),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        try
        {
            if (kind == "socket")
            {
                socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                socket.Bind(new UnixDomainSocketEndPoint(path));
            }
            if (disk is not null) Scratch.FillRandom(disk, 0, 4096, seed: 8);
            string? before = disk is null ? null : Scratch.Sha256(disk, 0, 4096);

            var refusal = Refused(path, createIfMissing);

            Assert.Contains($"'{path}' is a {kind}", refusal.Message);
            if (disk is not null) Assert.Equal(before, Scratch.Sha256(disk, 0, 4096));
        }
        finally
        {
            socket?.Dispose();
        }

        string Fifo()
        {
            string fifo = Path.Combine(_sticky, "fifo");
            Scratch.Run("mkfifo", fifo);
            return fifo;
        }
    }

    [Fact]
    public void A_file_with_a_second_hard_link_is_refused_under_either_name()
    {
        string path = Path.Combine(_sticky, "mirror.log");
        File.WriteAllBytes(path, "bitmap"u8.ToArray());
        File.SetUnixFileMode(path, (UnixFileMode)0x1A4);
        string alias = Path.Combine(_rootOnly, "alias");
        Scratch.Run("ln", $"{path} {alias}");

        foreach (string name in new[] { path, alias })
            Assert.Contains($"'{name}' has 2 hard links", Refused(name, createIfMissing: true).Message);
        Assert.Equal((UnixFileMode)0x1A4, File.GetUnixFileMode(path)); // refused before anything was changed
    }

    [Fact]
    public void A_file_another_user_owns_is_refused_and_left_as_it_was()
    {
        string path = Path.Combine(_sticky, "mirror.log");
        AsNobody($"touch {path}");
        File.SetUnixFileMode(path, (UnixFileMode)0x1B6);

        Assert.Contains($"'{path}' is owned by uid {Nobody}", Refused(path, createIfMissing: true).Message);
        Assert.Equal((UnixFileMode)0x1B6, File.GetUnixFileMode(path));
    }

    [Fact]
    public void A_second_open_of_a_live_log_is_LogInUse_and_after_Dispose_it_opens_again()
    {
        string path = Path.Combine(_sticky, "mirror.log");
        File.CreateSymbolicLink(Path.Combine(_sticky, "other-name.log"), path);

        using (LogFile.Open(path, createIfMissing: true))
        {
            var busy = Refused(path, createIfMissing: true, "LogInUse");
            Assert.Equal(KcopydErrorKind.ResourceBusy, busy.Kind);
            Assert.Contains("is the log of a mirror that is live", busy.Message);
            Refused(Path.Combine(_sticky, "other-name.log"), createIfMissing: false, "LogInUse");
        }

        using var again = LogFile.Open(path, createIfMissing: false);
        Assert.False(again.Created);
    }

    [Fact]
    public async Task A_log_another_process_holds_is_LogInUse_and_left_as_it_was()
    {
        string path = Path.Combine(_sticky, "mirror.log");
        File.WriteAllBytes(path, "bitmap"u8.ToArray());
        File.SetUnixFileMode(path, (UnixFileMode)0x1A4);
        // Another mirror's process: an OFD write lock on the whole file, held until its stdin closes.
        const string holdLock = "import fcntl, os, struct, sys\n"
            + "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            + "fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack('hhqqixxxx', fcntl.F_WRLCK, 0, 0, 0, 0))\n"
            + "print('locked', flush=True)\n"
            + "sys.stdin.read()\n";
        var start = new ProcessStartInfo("python3", new[] { "-c", holdLock, path }) { RedirectStandardInput = true, RedirectStandardOutput = true };
        using var holder = Process.Start(start)!;
        try
        {
            Assert.Equal("locked", await holder.StandardOutput.ReadLineAsync().WaitAsync(Bounded));

            Refused(path, createIfMissing: true, "LogInUse");
            Assert.Equal((UnixFileMode)0x1A4, File.GetUnixFileMode(path));
        }
        finally
        {
            holder.StandardInput.Close();
            if (!holder.WaitForExit(Bounded)) holder.Kill();
        }
    }

    [Fact]
    public void A_loop_of_links_is_refused_after_forty_links()
    {
        File.CreateSymbolicLink(Path.Combine(_sticky, "a"), "b");
        File.CreateSymbolicLink(Path.Combine(_sticky, "b"), "a");

        Assert.Contains("more than 40 symbolic links", Refused(Path.Combine(_sticky, "a"), createIfMissing: true).Message);
    }

    [Fact]
    public void A_missing_log_or_directory_is_NotFound_and_nothing_is_created()
    {
        var missingLog = Refused(Path.Combine(_sticky, "absent.log"), createIfMissing: false);
        var missingDir = Refused(Path.Combine(_sticky, "absent", "mirror.log"), createIfMissing: true);

        Assert.Equal(KcopydErrorKind.NotFound, missingLog.Kind);
        Assert.Equal(KcopydErrorKind.NotFound, missingDir.Kind);
        Assert.Contains($"the directory '{Path.Combine(_sticky, "absent")}' does not exist", missingDir.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_sticky));
    }

    [Theory]
    [InlineData("/")]
    [InlineData("logs/")]
    [InlineData("logs/.")]
    [InlineData("logs/..")]
    public void A_path_that_names_a_directory_is_refused(string suffix)
    {
        Directory.CreateDirectory(Path.Combine(_sticky, "logs"));

        Refused(suffix == "/" ? "/" : _sticky + "/" + suffix, createIfMissing: true);
        Assert.Empty(Directory.GetFiles(_sticky, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public void DeleteIfCreated_removes_a_log_this_call_created_and_leaves_an_existing_one()
    {
        string created = Path.Combine(_sticky, "created.log"), existing = Path.Combine(_sticky, "existing.log");
        File.WriteAllBytes(existing, "bitmap"u8.ToArray());

        using (var log = LogFile.Open(created, createIfMissing: true))
            log.DeleteIfCreated();
        using (var log = LogFile.Open(existing, createIfMissing: true))
            log.DeleteIfCreated();

        Assert.False(File.Exists(created));
        Assert.Equal("bitmap"u8.ToArray(), File.ReadAllBytes(existing));
        using var again = LogFile.Open(created, createIfMissing: true);
        Assert.True(again.Created);
    }

    [Fact]
    public void DeleteIfCreated_leaves_a_file_that_took_the_created_name_since()
    {
        string path = Path.Combine(_sticky, "mirror.log");
        using var log = LogFile.Open(path, createIfMissing: true);
        File.Move(path, Path.Combine(_sticky, "moved.log"));
        File.WriteAllBytes(path, "someone else's"u8.ToArray());

        log.DeleteIfCreated();

        Assert.Equal("someone else's"u8.ToArray(), File.ReadAllBytes(path));
    }

    /// <summary>
    /// Opens <paramref name="path"/> expecting a refusal, within a bounded time (a FIFO must not hang it), and checks
    /// the refusal left no descriptor open.
    /// </summary>
    private KcopydException Refused(string path, bool createIfMissing, string errorId = "InvalidLogPath")
    {
        var before = OpenDescriptors();
        var open = Task.Run(() => Assert.Throws<KcopydException>(() => LogFile.Open(path, createIfMissing).Dispose()));
        Assert.True(open.Wait(Bounded), $"opening '{path}' did not return within {Bounded}");
        var refusal = open.Result;

        Assert.Equal(errorId, refusal.ErrorId);
        Assert.Equal(path, refusal.Target);
        Assert.Contains(path, refusal.Message);
        var after = OpenDescriptors();
        // Compared per target, as counts: the runtime may close descriptors meanwhile (finalizers), never open ours.
        var opened = after.GroupBy(t => t).Where(g => g.Count() > before.Count(t => t == g.Key)).Select(g => g.Key).ToList();
        Assert.True(opened.Count == 0, $"the refused open left descriptors open on: {string.Join(", ", opened)}");
        return refusal;
    }

    /// <summary>What each of this process's descriptors refers to (one closed while being listed has no target and is left out).</summary>
    private static string[] OpenDescriptors() =>
        new DirectoryInfo("/proc/self/fd").GetFileSystemInfos().Select(fd => fd.LinkTarget).OfType<string>().ToArray();

    private string Dir(string name, UnixFileMode mode)
    {
        string path = Path.Combine(_scratch.Folder, name);
        Directory.CreateDirectory(path);
        File.SetUnixFileMode(path, mode); // chmod, so the umask has no say
        return path;
    }

    private static void AsNobody(string command) =>
        Scratch.Run("setpriv", $"--reuid={Nobody} --regid={Nobody} --clear-groups {command}");

    private static (ulong Device, ulong Inode) DevIno(string path)
    {
        var info = Scratch.Run("stat", $"-c %d:%i {path}").Trim().Split(':');
        return (ulong.Parse(info[0]), ulong.Parse(info[1]));
    }

    private static void Unmount(string path)
    {
        try { Scratch.Run("umount", path); }
        catch (InvalidOperationException) { Scratch.Run("umount", $"-l {path}"); } // never leave a mount for the folder's deletion to recurse into
    }

    private sealed class Undo(Action action) : IDisposable
    {
        public void Dispose() => action();
    }
}
