using System.Diagnostics;
using System.Text;
using Kcopyd.Host.State;
using Tmds.Linux;

namespace Kcopyd.Host.Tests;

/// <summary>The state directory keeps mirror definitions across host restarts, privately, atomically and for one host at a time.</summary>
public sealed class StateDirectoryTests : IDisposable
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode PrivateFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private readonly string _parent = Directory.CreateTempSubdirectory("kcopyd-state-").FullName;
    private string StateDir => Path.Combine(_parent, "state");
    private string MirrorsDir => Path.Combine(StateDir, "mirrors");

    public void Dispose() => Directory.Delete(_parent, recursive: true);

    [Fact]
    public void A_new_state_directory_and_its_mirrors_directory_are_made_0700_and_its_files_0600()
    {
        using (var state = StateDirectory.Open(StateDir))
        {
            state.SaveMirror(Definition("m1"));
            state.SaveSettings(new HostSettings());
        }

        Assert.Equal(Private, File.GetUnixFileMode(StateDir));
        Assert.Equal(Private, File.GetUnixFileMode(MirrorsDir));
        Assert.Equal(PrivateFile, File.GetUnixFileMode(Path.Combine(StateDir, "host.lock")));
        Assert.Equal(PrivateFile, File.GetUnixFileMode(Path.Combine(MirrorsDir, "m1.json")));
        Assert.Equal(PrivateFile, File.GetUnixFileMode(Path.Combine(StateDir, "settings.json")));
    }

    [Fact]
    public void An_existing_state_directory_that_others_may_write_to_is_refused()
    {
        Directory.CreateDirectory(StateDir);
        File.SetUnixFileMode(StateDir, (UnixFileMode)0x1ff); // 0777

        var e = Assert.Throws<HostStartException>(() => StateDirectory.Open(StateDir));
        Assert.Contains("mode 777", e.Message);
        Assert.Contains("chmod go-w", e.Message);
        Assert.False(File.Exists(Path.Combine(StateDir, "host.lock")));
    }

    [Fact]
    public void An_existing_state_directory_that_only_its_owner_may_write_to_is_accepted()
    {
        Directory.CreateDirectory(StateDir);
        File.SetUnixFileMode(StateDir, (UnixFileMode)0x1ed); // 0755

        using var state = StateDirectory.Open(StateDir);
        Assert.Equal(StateDir, state.Path);
    }

    [Fact]
    public void An_existing_state_directory_of_another_user_is_refused()
    {
        Directory.CreateDirectory(StateDir, Private);
        Chown(StateDir, 65534);

        var e = Assert.Throws<HostStartException>(() => StateDirectory.Open(StateDir));
        Assert.Contains("belongs to uid 65534", e.Message);
    }

    [Fact]
    public void A_symbolic_link_as_the_state_directory_is_refused()
    {
        string real = Directory.CreateDirectory(Path.Combine(_parent, "real"), Private).FullName;
        File.CreateSymbolicLink(StateDir, real);

        var e = Assert.Throws<HostStartException>(() => StateDirectory.Open(StateDir));
        Assert.Contains("not a directory", e.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(real));
    }

    [Fact]
    public void A_second_open_is_refused_while_the_first_is_held_and_allowed_after_it_is_disposed()
    {
        var first = StateDirectory.Open(StateDir);

        var e = Assert.Throws<HostStartException>(() => StateDirectory.Open(StateDir));
        Assert.Contains("Another Kcopyd host uses this state directory", e.Message);

        first.Dispose();
        using var second = StateDirectory.Open(StateDir);
    }

    [Fact]
    public void Another_process_cannot_lock_the_directory_while_it_is_open()
    {
        string lockFile = Path.Combine(StateDir, "host.lock");
        using (StateDirectory.Open(StateDir))
            Assert.Equal(3, TryLockInAnotherProcess(lockFile));
        Assert.Equal(0, TryLockInAnotherProcess(lockFile));
    }

    [Fact]
    public void A_definition_comes_back_after_a_restart_with_every_property()
    {
        MirrorDefinition saved = Definition("m1");
        using (var state = StateDirectory.Open(StateDir))
            state.SaveMirror(saved);

        using var reopened = StateDirectory.Open(StateDir);
        StoredMirror stored = Assert.Single(reopened.LoadMirrors());
        Assert.Equal("m1.json", stored.FileName);
        Assert.Null(stored.Error);
        MirrorDefinition loaded = stored.Definition!;
        Assert.Equal(MirrorDefinition.CurrentFormatVersion, loaded.FormatVersion);
        Assert.Equal(saved.Name, loaded.Name);
        Assert.Equal(saved.RegionSizeBytes, loaded.RegionSizeBytes);
        Assert.Equal(saved.LogPath, loaded.LogPath);
        Assert.Equal(saved.RequestPoolSize, loaded.RequestPoolSize);
        Assert.Equal(saved.RecoveryBytesPerSecond, loaded.RecoveryBytesPerSecond);
        Assert.Equal(saved.Force, loaded.Force);
        Assert.Equal(saved.Created, loaded.Created);
        Assert.Equal(saved.Created.Offset, loaded.Created.Offset);
        Assert.Equal(
            saved.Legs.Select(l => (l.Path, l.IsMirror, l.StableId)),
            loaded.Legs.Select(l => (l.Path, l.IsMirror, l.StableId)));
        Assert.Equal(saved.Exports, loaded.Exports);
        Assert.Contains("\n  \"Name\": \"m1\"", File.ReadAllText(Path.Combine(MirrorsDir, "m1.json"))); // indented for admins
    }

    [Fact]
    public void A_definition_written_before_exports_were_kept_loads_with_none()
    {
        using (var state = StateDirectory.Open(StateDir))
            state.SaveMirror(Definition("m1"));
        string file = Path.Combine(MirrorsDir, "m1.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(file))!.AsObject();
        Assert.True(json.Remove("Exports"));
        File.WriteAllText(file, json.ToJsonString());

        using var reopened = StateDirectory.Open(StateDir);
        StoredMirror stored = Assert.Single(reopened.LoadMirrors());
        Assert.Null(stored.Error);
        Assert.Empty(stored.Definition!.Exports);
    }

    [Fact]
    public void Definitions_load_in_name_order_and_an_in_memory_log_stays_null()
    {
        using var state = StateDirectory.Open(StateDir);
        state.SaveMirror(Definition("b"));
        MirrorDefinition a = Definition("a");
        a.LogPath = null;
        state.SaveMirror(a);

        IReadOnlyList<StoredMirror> stored = state.LoadMirrors();
        Assert.Equal(["a.json", "b.json"], stored.Select(s => s.FileName));
        Assert.Null(stored[0].Definition!.LogPath);
    }

    [Fact]
    public void Saving_again_replaces_the_definition_and_leaves_no_temporary_file()
    {
        using var state = StateDirectory.Open(StateDir);
        state.SaveMirror(Definition("m1"));
        MirrorDefinition changed = Definition("m1");
        changed.RequestPoolSize = 99;
        state.SaveMirror(changed);

        Assert.Equal(99, Assert.Single(state.LoadMirrors()).Definition!.RequestPoolSize);
        Assert.Equal(["m1.json"], Directory.EnumerateFileSystemEntries(MirrorsDir).Select(Path.GetFileName));
    }

    [Fact]
    public void A_save_that_crashed_before_its_rename_leaves_the_old_definition_and_its_temporary_file_is_removed()
    {
        using var state = StateDirectory.Open(StateDir);
        state.SaveMirror(Definition("m1"));
        string temp = Path.Combine(MirrorsDir, ".m1.json.0123456789abcdef.tmp");
        File.WriteAllText(temp, "{ \"FormatVersion\": 1, \"Na"); // cut short by the crash

        StoredMirror stored = Assert.Single(state.LoadMirrors());
        Assert.Equal(4096, stored.Definition!.RegionSizeBytes);
        Assert.False(File.Exists(temp));
    }

    [Theory]
    [InlineData("corrupt", "not a valid mirror definition")]
    [InlineData("another mirror's", "defines the mirror 'other', not 'm1'")]
    [InlineData("newer", "format version 2")]
    [InlineData("another user's", "belongs to uid 65534")]
    [InlineData("symbolic link", "symbolic link, which is not followed")]
    public void A_file_that_cannot_be_used_is_reported_and_kept(string kind, string expected)
    {
        using var state = StateDirectory.Open(StateDir);
        string path = Path.Combine(MirrorsDir, "m1.json");
        MirrorDefinition definition = Definition(kind == "another mirror's" ? "other" : "m1");
        if (kind == "newer") definition.FormatVersion = 2;
        state.SaveMirror(definition);
        string saved = Path.Combine(MirrorsDir, definition.Name + ".json");
        switch (kind)
        {
            case "corrupt": File.WriteAllText(path, "{ not json"); break;
            case "another mirror's": File.Move(saved, path); break;
            case "another user's": Chown(path, 65534); break;
            case "symbolic link":
                string elsewhere = Path.Combine(_parent, "m1.json");
                File.Move(path, elsewhere);
                File.CreateSymbolicLink(path, elsewhere);
                break;
        }
        byte[] before = File.ReadAllBytes(path);

        StoredMirror stored = Assert.Single(state.LoadMirrors());
        Assert.Equal("m1.json", stored.FileName);
        Assert.Null(stored.Definition);
        Assert.Contains(expected, stored.Error);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.EnumerateFileSystemEntries(MirrorsDir));
    }

    [Fact]
    public void A_deleted_mirror_is_not_loaded_and_deleting_a_missing_one_is_fine()
    {
        using var state = StateDirectory.Open(StateDir);
        state.SaveMirror(Definition("m1"));

        state.DeleteMirror("m1");
        state.DeleteMirror("never-saved");

        Assert.Empty(state.LoadMirrors());
    }

    [Theory]
    [InlineData("")]
    [InlineData("../escape")]
    [InlineData("a/b")]
    [InlineData(".hidden")]
    [InlineData("-dash")]
    [InlineData("m1\n")]
    public void A_name_that_is_not_a_plain_mirror_name_is_refused(string name)
    {
        using var state = StateDirectory.Open(StateDir);

        Assert.Throws<ArgumentException>(() => state.SaveMirror(Definition(name)));
        Assert.Throws<ArgumentException>(() => state.DeleteMirror(name));
        Assert.Empty(Directory.EnumerateFileSystemEntries(MirrorsDir));
    }

    [Fact]
    public void Settings_are_the_defaults_without_a_file()
    {
        using var state = StateDirectory.Open(StateDir);

        HostSettings settings = state.LoadSettings(out string? error);
        Assert.Null(error);
        Assert.Equal(1000, settings.JobHistoryCount);
        Assert.Equal(TimeSpan.FromHours(24), settings.JobHistoryMaxAge);
    }

    [Fact]
    public void Settings_come_back_after_a_restart()
    {
        using (var state = StateDirectory.Open(StateDir))
            state.SaveSettings(new HostSettings { JobHistoryCount = 5, JobHistoryMaxAge = TimeSpan.FromMinutes(90) });

        using var reopened = StateDirectory.Open(StateDir);
        HostSettings settings = reopened.LoadSettings(out string? error);
        Assert.Null(error);
        Assert.Equal(5, settings.JobHistoryCount);
        Assert.Equal(TimeSpan.FromMinutes(90), settings.JobHistoryMaxAge);
    }

    [Fact]
    public void Broken_settings_give_the_defaults_and_say_why()
    {
        using var state = StateDirectory.Open(StateDir);
        File.WriteAllText(Path.Combine(StateDir, "settings.json"), "{ \"JobHistoryCount\": \"many\" }");

        HostSettings settings = state.LoadSettings(out string? error);
        Assert.Contains("settings.json", error);
        Assert.Equal(1000, settings.JobHistoryCount);
    }

    private static MirrorDefinition Definition(string name) => new()
    {
        Name = name,
        Legs =
        [
            new MirrorLegDefinition { Path = "/dev/loop7", IsMirror = false, StableId = "wwn-0x5000c500a1b2c3d4" },
            new MirrorLegDefinition { Path = "lower", IsMirror = true, StableId = "" },
        ],
        RegionSizeBytes = 4096,
        LogPath = "/var/lib/kcopyd/logs/" + name + ".log",
        RequestPoolSize = 16,
        RecoveryBytesPerSecond = 50_000_000,
        Force = true,
        Created = new DateTimeOffset(2025, 3, 4, 5, 6, 7, 891, TimeSpan.FromHours(2)),
        Exports =
        [
            new ExportDefinition { UnixSocket = "/run/kcopyd/exports/" + name + ".sock", BlockDevice = true },
            new ExportDefinition { Listen = "127.0.0.1:10809" },
        ],
    };

    private static unsafe void Chown(string path, uint uid)
    {
        fixed (byte* p = Encoding.UTF8.GetBytes(path + "\0"))
            Assert.Equal(0, LibC.chown(p, uid, uid));
    }

    /// <summary>lockf is a POSIX record lock, which an OFD lock conflicts with: 3 when the lock is held, 0 when it was free.</summary>
    private static int TryLockInAnotherProcess(string lockFile)
    {
        var start = new ProcessStartInfo("python3") { RedirectStandardError = true };
        foreach (string arg in new[]
        {
            "-c",
            "import fcntl, sys\nf = open(sys.argv[1], 'r+')\n"
                + "try: fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError: sys.exit(3)",
            lockFile,
        })
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode is 0 or 3, stderr);
        return process.ExitCode;
    }
}
