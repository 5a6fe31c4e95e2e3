using System.Text;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Native;
using Microsoft.Win32.SafeHandles;
using Tmds.Linux;

namespace Kcopyd.Engine.Mirror;

/// <summary>
/// A mirror's log file, opened so that no path can make root write anything but a regular file of its own: the path
/// is walked one name at a time from '/', following only symbolic links of root or the effective user and passing
/// only directories nobody else can rearrange, and the file is locked (an OFD lock) for as long as it is open.
/// </summary>
public sealed unsafe class LogFile : IDisposable
{
    private const int MaxSymlinks = 40;      // the kernel's MAXSYMLINKS
    private const int MaxLinkTargetBytes = 4096; // PATH_MAX
    private const ushort LogMode = 0x180;    // 0600: the bitmap says which regions of the legs differ, nobody else's business
    private const ushort PermissionBits = 0xFFF;

    private int _directoryFd; // O_PATH fd of the directory this call created the file in, so DeleteIfCreated removes that very entry
    private readonly byte[]? _name; // NUL-terminated
    private bool _deleted;

    private LogFile(string path, SafeFileHandle handle, bool created, in stat st, int directoryFd, byte[]? name)
    {
        Path = path;
        Handle = handle;
        Created = created;
        Identity = new DeviceIdentity(DeviceKind.ImageFile, (ulong)st.st_dev, (ulong)st.st_ino);
        FilesystemDevice = (ulong)st.st_dev;
        _directoryFd = directoryFd;
        _name = name;
    }

    /// <summary>The path as the caller gave it.</summary>
    public string Path { get; }

    /// <summary>Read/write, locked; for <see cref="RandomAccess"/>.</summary>
    public SafeFileHandle Handle { get; }

    /// <summary>True when this call created the file.</summary>
    public bool Created { get; }

    /// <summary>The log's device and inode, so a caller can refuse a log that lives on or in one of the mirror's legs.</summary>
    public DeviceIdentity Identity { get; }

    /// <summary>st_dev of the log: the device the log's filesystem lives on.</summary>
    public ulong FilesystemDevice { get; }

    /// <summary>
    /// Opens the log at <paramref name="path"/> (relative to the current directory unless absolute), creating it
    /// 0600 when missing and <paramref name="createIfMissing"/>. Anything that is not safely a regular file of the
    /// effective user throws InvalidLogPath, naming what to fix; a log another open holds throws LogInUse. A refusal
    /// writes nothing, creates nothing and leaves no descriptor open. <paramref name="checkPlacement"/>, if given,
    /// sees the file's identity (null for a file about to be created) and the st_dev of the filesystem it is or
    /// would be on before the file is opened for writing, locked, read or created; it throws to refuse the place.
    /// </summary>
    public static LogFile Open(string path, bool createIfMissing, Action<DeviceIdentity?, ulong>? checkPlacement = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (path.Contains('\0')) throw Invalid(path, $"'{path}' contains a NUL character");
        string absolute = path[0] == '/' ? path : Environment.CurrentDirectory.TrimEnd('/') + "/" + path;
        if (absolute.EndsWith('/')) throw Invalid(path, $"'{path}' ends with '/', so it names a directory; a log is a regular file");

        var walk = new Walk(path, checkPlacement);
        try
        {
            walk.Push(Encoding.UTF8.GetBytes(absolute));
            return walk.Run(createIfMissing);
        }
        finally
        {
            walk.Dispose();
        }
    }

    /// <summary>
    /// For a caller that failed after Open: removes the file if this call created it (and the name still holds it),
    /// then fsyncs the directory so the removal is as durable as the creation was. Call before Dispose.
    /// </summary>
    public void DeleteIfCreated()
    {
        if (!Created || _deleted) return;
        ObjectDisposedException.ThrowIf(_directoryFd < 0, this);
        stat st;
        fixed (byte* name = _name)
        {
            // Only our inode: whoever could have replaced the name since (root, the owner) put something else there.
            bool stillOurs = LibC.fstatat(_directoryFd, name, &st, LibC.AT_SYMLINK_NOFOLLOW) == 0
                && (ulong)st.st_dev == Identity.Device && (ulong)st.st_ino == Identity.Inode;
            if (stillOurs && LibC.unlinkat(_directoryFd, name, 0) != 0)
                throw Failed(Path, Errno.Last, $"Cannot remove the mirror log '{Path}' this call created");
        }
        _deleted = true;
        FsyncDirectory(Path, _directoryFd);
    }

    public void Dispose()
    {
        Handle.Dispose(); // closing the only descriptor of the open file description releases the OFD lock
        int fd = Interlocked.Exchange(ref _directoryFd, -1);
        if (fd >= 0) LibC.close(fd);
    }

    public override string ToString() => Path;

    /// <summary>The state of one resolution: the directory reached, the names still to walk, the links followed.</summary>
    private sealed class Walk : IDisposable
    {
        private readonly string _path;
        private readonly Action<DeviceIdentity?, ulong>? _checkPlacement;
        private readonly uint _euid = LibC.geteuid();
        private readonly Stack<byte[]> _pending = new();
        private int _dirFd = -1;
        private string _dirShown = ""; // the directory reached, spelled from '/', for messages
        private int _links;

        public Walk(string path, Action<DeviceIdentity?, ulong>? checkPlacement)
        {
            _path = path;
            _checkPlacement = checkPlacement;
        }

        /// <summary>Queues a path's names to be walked before those still queued; an absolute one is walked from '/'.</summary>
        public void Push(byte[] path)
        {
            if (path.Length > 0 && path[0] == '/') StartAtRoot();
            var names = new List<byte[]>();
            for (int start = 0; start < path.Length;)
            {
                int end = Array.IndexOf(path, (byte)'/', start);
                if (end < 0) end = path.Length;
                if (end > start) names.Add(path[start..end]);
                start = end + 1;
            }
            for (int i = names.Count - 1; i >= 0; i--) _pending.Push(names[i]);
        }

        public LogFile Run(bool createIfMissing)
        {
            while (true)
            {
                if (_pending.Count == 0) throw Invalid(_path, $"'{_path}' leads to the directory '{Shown("")}'; a log is a regular file");
                byte[] name = _pending.Pop();
                bool last = _pending.Count == 0;
                if (last)
                {
                    if (IsDot(name) || IsDotDot(name)) throw Invalid(_path, $"'{Shown(name)}' is a directory; a log is a regular file");
                    var log = OpenLast(name, createIfMissing);
                    if (log is null) continue; // a link: its target's names are queued
                    if (log.Created) _dirFd = -1; // the log keeps it for DeleteIfCreated
                    return log;
                }
                if (IsDot(name)) continue;
                Enter(name);
            }
        }

        public void Dispose()
        {
            if (_dirFd >= 0) LibC.close(_dirFd);
            _dirFd = -1;
        }

        private void StartAtRoot()
        {
            Dispose();
            fixed (byte* root = "/\0"u8)
                _dirFd = LibC.openat(LibC.AT_FDCWD, root, LibC.O_PATH | LibC.O_DIRECTORY | LibC.O_CLOEXEC, 0);
            if (_dirFd < 0) throw Failed(_path, Errno.Last, $"Cannot open '/' to resolve the mirror log '{_path}'");
            _dirShown = "";
            stat st;
            if (LibC.fstat(_dirFd, &st) != 0) throw Failed(_path, Errno.Last, $"Cannot stat '/' while resolving the mirror log '{_path}'");
            CheckDirectory("/", st);
        }

        /// <summary>Steps into a directory, or queues a trusted link's target; refuses anything else.</summary>
        private void Enter(byte[] name)
        {
            string shown = Shown(name);
            // O_PATH without O_DIRECTORY opens a link itself, so the checks below look at the very object used next.
            int fd = OpenAt(name, LibC.O_PATH | LibC.O_NOFOLLOW | LibC.O_CLOEXEC);
            if (fd < 0)
            {
                int errno = Errno.Last;
                if (errno == LibC.ENOENT)
                    throw new KcopydException("InvalidLogPath", KcopydErrorKind.NotFound,
                        $"The mirror log '{_path}' cannot be reached: the directory '{shown}' does not exist.", _path);
                throw Failed(_path, errno, $"Cannot open the directory '{shown}' on the way to the mirror log '{_path}'");
            }
            try
            {
                stat st = Stat(fd, shown);
                uint type = Type(st);
                if (type == (uint)LibC.S_IFLNK)
                {
                    Follow(fd, st, shown);
                    return;
                }
                if (type != (uint)LibC.S_IFDIR) throw Invalid(_path, $"'{shown}' is {Describe(type)}, not a directory");
                CheckDirectory(shown, st);
                LibC.close(_dirFd);
                _dirFd = fd;
                fd = -1;
                _dirShown = IsDotDot(name) ? _dirShown[..Math.Max(0, _dirShown.LastIndexOf('/'))] : shown;
            }
            finally
            {
                if (fd >= 0) LibC.close(fd);
            }
        }

        /// <summary>Opens or creates the file the path names; null when it is a trusted link, whose target is then queued.</summary>
        private LogFile? OpenLast(byte[] name, bool createIfMissing)
        {
            string shown = Shown(name);
            int pathFd = OpenAt(name, LibC.O_PATH | LibC.O_NOFOLLOW | LibC.O_CLOEXEC);
            if (pathFd < 0)
            {
                int errno = Errno.Last;
                if (errno != LibC.ENOENT) throw Failed(_path, errno, $"Cannot open the mirror log {Named(shown)}");
                if (!createIfMissing)
                    throw new KcopydException("InvalidLogPath", KcopydErrorKind.NotFound, $"The mirror log {Named(shown)} does not exist.", _path);
                _checkPlacement?.Invoke(null, (ulong)Stat(_dirFd, _dirShown + "/").st_dev);
                return Create(name, shown);
            }
            try
            {
                // Judged through an O_PATH descriptor first, so a device or FIFO is never really opened: opening some
                // devices does something (a tape rewinds on close), and only a regular file is ever a log.
                stat st = Stat(pathFd, shown);
                uint type = Type(st);
                if (type == (uint)LibC.S_IFLNK)
                {
                    Follow(pathFd, st, shown);
                    return null;
                }
                CheckLogFile(shown, st);
                // Before the lock: a leg given as its own log is that, not a log some mirror holds.
                _checkPlacement?.Invoke(new DeviceIdentity(DeviceKind.ImageFile, (ulong)st.st_dev, (ulong)st.st_ino), (ulong)st.st_dev);
                return OpenExisting(name, shown, st);
            }
            finally
            {
                LibC.close(pathFd);
            }
        }

        private LogFile OpenExisting(byte[] name, string shown, in stat seen)
        {
            // O_NONBLOCK: should a FIFO take the file's place after all, opening it must not wait for a writer.
            int fd = OpenAt(name, LibC.O_RDWR | LibC.O_NOFOLLOW | LibC.O_NONBLOCK | LibC.O_CLOEXEC);
            if (fd < 0) throw Failed(_path, Errno.Last, $"Cannot open the mirror log {Named(shown)}");
            try
            {
                stat st = Stat(fd, shown);
                if ((ulong)st.st_dev != (ulong)seen.st_dev || (ulong)st.st_ino != (ulong)seen.st_ino)
                    throw Invalid(_path, $"'{shown}' was replaced while it was being opened");
                CheckLogFile(shown, st);
                ClearNonBlocking(fd, shown);
                Lock(fd, shown);
                // After the lock: a log that another mirror holds is left exactly as it was.
                if (((ushort)st.st_mode & PermissionBits) != LogMode && LibC.fchmod(fd, LogMode) != 0)
                    throw Failed(_path, Errno.Last, $"Cannot make the mirror log {Named(shown)} mode 0600");
                var log = new LogFile(_path, new SafeFileHandle(fd, ownsHandle: true), created: false, st, -1, null);
                fd = -1;
                return log;
            }
            finally
            {
                if (fd >= 0) LibC.close(fd);
            }
        }

        private LogFile Create(byte[] name, string shown)
        {
            int fd = OpenAt(name, LibC.O_RDWR | LibC.O_CREAT | LibC.O_EXCL | LibC.O_NOFOLLOW | LibC.O_CLOEXEC, LogMode);
            if (fd < 0)
            {
                int errno = Errno.Last;
                if (errno == LibC.EEXIST) throw Invalid(_path, $"'{shown}' appeared while the log was being created; look at what it is and try again");
                throw Failed(_path, errno, $"Cannot create the mirror log {Named(shown)}");
            }
            try
            {
                // The umask may have taken bits from 0600, and a log the owner cannot write is no log.
                if (LibC.fchmod(fd, LogMode) != 0) throw Failed(_path, Errno.Last, $"Cannot make the new mirror log {Named(shown)} mode 0600");
                stat st = Stat(fd, shown);
                Lock(fd, shown);
                if (LibC.fsync(fd) != 0) throw Failed(_path, Errno.Last, $"Cannot fsync the new mirror log {Named(shown)}");
                // The entry lives in the directory: without this a crash can lose the log the mirror goes on to trust.
                FsyncDirectory(_path, _dirFd);
                var log = new LogFile(_path, new SafeFileHandle(fd, ownsHandle: true), created: true, st, _dirFd, Terminated(name));
                fd = -1;
                return log;
            }
            catch (KcopydException e) when (e.ErrorId == "LogInUse")
            {
                // Another open found the new file and locked it first: it is that mirror's log now, not ours to remove.
                throw;
            }
            catch
            {
                fixed (byte* n = Terminated(name)) LibC.unlinkat(_dirFd, n, 0);
                try { FsyncDirectory(_path, _dirFd); } catch (KcopydException) { /* the first error is the one to report */ }
                throw;
            }
            finally
            {
                if (fd >= 0) LibC.close(fd);
            }
        }

        /// <summary>Queues a link's target in place of the link, if root or the effective user made the link.</summary>
        private void Follow(int linkFd, in stat st, string shown)
        {
            uint owner = st.st_uid;
            if (owner != 0 && owner != _euid)
                throw Invalid(_path, $"'{shown}' is a symbolic link owned by uid {owner}; only links of root (or uid {_euid}) are followed, since anyone else's could point the log at any file or device");
            if (++_links > MaxSymlinks) throw Invalid(_path, $"resolving it follows more than {MaxSymlinks} symbolic links (a loop?)");
            byte[] buffer = new byte[MaxLinkTargetBytes];
            long length;
            fixed (byte* empty = "\0"u8)
            fixed (byte* b = buffer)
                length = LibC.readlinkat(linkFd, empty, b, (size_t)(ulong)buffer.Length); // "" reads the link the O_PATH fd holds
            if (length < 0) throw Failed(_path, Errno.Last, $"Cannot read the symbolic link '{shown}' on the way to the mirror log '{_path}'");
            if (length == 0) throw Invalid(_path, $"'{shown}' is an empty symbolic link");
            if (length >= buffer.Length) throw Invalid(_path, $"'{shown}' is a symbolic link whose target is longer than {MaxLinkTargetBytes - 1} bytes");
            Push(buffer[..(int)length]);
        }

        /// <summary>A directory only root or we can change: anyone else could swap the log's name for a link.</summary>
        private void CheckDirectory(string shown, in stat st)
        {
            uint owner = st.st_uid;
            if (owner != 0 && owner != _euid)
                throw Invalid(_path, $"the directory '{shown}' is owned by uid {owner}, who could swap the log for a link to any file or device; keep the log in a directory owned by root");
            uint mode = (ushort)st.st_mode;
            uint othersWrite = (uint)(ushort)(LibC.S_IWGRP | LibC.S_IWOTH);
            // The sticky bit (/tmp) keeps others from renaming or removing a name they do not own.
            if ((mode & othersWrite) != 0 && (mode & (ushort)LibC.S_ISVTX) == 0)
                throw Invalid(_path, $"the directory '{shown}' (mode {Octal(mode & PermissionBits)}) is writable by {WhoWrites(mode)} and not sticky, so they could swap the log for a link to any file or device; remove that write permission or keep the log elsewhere");
        }

        private void CheckLogFile(string shown, in stat st)
        {
            uint type = Type(st);
            if (type != (uint)LibC.S_IFREG) throw Invalid(_path, $"'{shown}' is {Describe(type)}; a log is a regular file");
            uint owner = st.st_uid;
            if (owner != _euid) throw Invalid(_path, $"'{shown}' is owned by uid {owner}; a log must belong to the user running the mirror (uid {_euid})");
            ulong nlink = (ulong)st.st_nlink;
            if (nlink != 1) throw Invalid(_path, $"'{shown}' has {nlink} hard links, so another name could be another file's; a log has exactly one name");
        }

        private void ClearNonBlocking(int fd, string shown)
        {
            int flags = LibC.fcntl(fd, LibC.F_GETFL);
            if (flags < 0 || LibC.fcntl(fd, LibC.F_SETFL, flags & ~LibC.O_NONBLOCK) != 0)
                throw Failed(_path, Errno.Last, $"Cannot clear O_NONBLOCK on the mirror log {Named(shown)}");
        }

        /// <summary>An OFD write lock on the whole file: it conflicts with any other open, in this process too.</summary>
        private void Lock(int fd, string shown)
        {
            flock whole = default;
            whole.l_type = (short)LibC.F_WRLCK;
            whole.l_whence = 0; // SEEK_SET; with l_start = l_len = 0 the lock covers the file however it grows
            int errno = BusyRetry.Run(() => OfdLock.Set(fd, whole), LibC.EAGAIN, LibC.EACCES);
            if (errno == 0) return;
            if (errno == LibC.EAGAIN || errno == LibC.EACCES)
                throw new KcopydException("LogInUse", KcopydErrorKind.ResourceBusy,
                    $"The mirror log {Named(shown)} is the log of a mirror that is live (in this or another process).", _path);
            throw Failed(_path, errno, $"Cannot lock the mirror log {Named(shown)}");
        }

        private int OpenAt(byte[] name, int flags, ushort mode = 0)
        {
            fixed (byte* p = Terminated(name))
            {
                int fd;
                do { fd = LibC.openat(_dirFd, p, flags, mode); } while (fd < 0 && Errno.Last == LibC.EINTR);
                return fd;
            }
        }

        private stat Stat(int fd, string shown)
        {
            stat st;
            if (LibC.fstat(fd, &st) != 0) throw Failed(_path, Errno.Last, $"Cannot stat '{shown}' on the way to the mirror log '{_path}'");
            return st;
        }

        /// <summary>The log as the caller gave it, and where it led if that reads differently.</summary>
        private string Named(string shown) => shown == _path ? $"'{_path}'" : $"'{_path}' (at '{shown}')";

        private string Shown(byte[] name) => Shown(Encoding.UTF8.GetString(name));

        private string Shown(string name) => _dirShown + "/" + name;
    }

    private static void FsyncDirectory(string path, int directoryFd)
    {
        // An O_PATH descriptor cannot be fsync'ed; "." through it reopens that same directory for reading.
        int fd;
        fixed (byte* dot = ".\0"u8)
            fd = LibC.openat(directoryFd, dot, LibC.O_RDONLY | LibC.O_DIRECTORY | LibC.O_CLOEXEC, 0);
        if (fd < 0) throw Failed(path, Errno.Last, $"Cannot open the directory of the mirror log '{path}' to fsync it");
        try
        {
            if (LibC.fsync(fd) != 0) throw Failed(path, Errno.Last, $"Cannot fsync the directory of the mirror log '{path}'");
        }
        finally
        {
            LibC.close(fd);
        }
    }

    private static uint Type(in stat st) => (ushort)st.st_mode & (uint)(ushort)LibC.S_IFMT;

    private static string Describe(uint type)
    {
        if (type == (uint)LibC.S_IFBLK) return "a block device (writing a log there would overwrite the device)";
        if (type == (uint)LibC.S_IFCHR) return "a character device";
        if (type == (uint)LibC.S_IFIFO) return "a FIFO (named pipe)";
        if (type == (uint)LibC.S_IFSOCK) return "a socket";
        if (type == (uint)LibC.S_IFDIR) return "a directory";
        if (type == (uint)LibC.S_IFLNK) return "a symbolic link";
        if (type == (uint)LibC.S_IFREG) return "a regular file";
        return $"a file of type {Octal(type)}";
    }

    private static string WhoWrites(uint mode)
    {
        bool group = (mode & (ushort)LibC.S_IWGRP) != 0, others = (mode & (ushort)LibC.S_IWOTH) != 0;
        return group && others ? "its group and others" : group ? "its group" : "others";
    }

    private static string Octal(uint mode) => "0" + Convert.ToString(mode & 0xFFFF, 8);

    private static byte[] Terminated(byte[] name)
    {
        byte[] z = new byte[name.Length + 1];
        name.CopyTo(z, 0);
        return z;
    }

    private static bool IsDot(byte[] name) => name is [(byte)'.'];

    private static bool IsDotDot(byte[] name) => name is [(byte)'.', (byte)'.'];

    private static KcopydException Invalid(string path, string problem) =>
        new("InvalidLogPath", KcopydErrorKind.InvalidArgument, $"Refusing the mirror log '{path}': {problem}.", path);

    private static KcopydException Failed(string path, int errno, string what) =>
        new("LogOpenFailed", errno == LibC.EACCES || errno == LibC.EPERM ? KcopydErrorKind.PermissionDenied : KcopydErrorKind.DeviceError,
            $"{what}: {Errno.Describe(errno)}.", path);
}
