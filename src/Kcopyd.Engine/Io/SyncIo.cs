using System.Runtime.InteropServices;
using Kcopyd.Engine.Memory;
using Kcopyd.Engine.Native;
using Tmds.Linux;

namespace Kcopyd.Engine.Io;

/// <summary>Performs one request with blocking system calls. Returns 0 or a positive errno.</summary>
internal static unsafe class SyncIo
{
    /// <summary>Runs the request; <c>resultOverride</c> is a test's stand-in for the kernel (see <see cref="BlockingIoQueue.ResultOverride"/>).</summary>
    public static int Execute(int fd, bool isBlockDevice, in BlockRequest request, Func<BlockRequest, int, int>? resultOverride = null)
    {
        return request.Operation switch
        {
            BlockOperation.Read => Transfer(fd, request, write: false, resultOverride),
            BlockOperation.Write => Transfer(fd, request, write: true, resultOverride),
            BlockOperation.WriteZeroes => WriteZeroes(fd, isBlockDevice, request.OffsetBytes, request.LengthBytes),
            BlockOperation.Flush => LibC.fdatasync(fd) == 0 ? 0 : Errno.Last,
            BlockOperation.Discard => Discard(fd, isBlockDevice, request.OffsetBytes, request.LengthBytes),
            BlockOperation.PunchZeroes => PunchZeroes(fd, isBlockDevice, request.OffsetBytes, request.LengthBytes),
            _ => Errno.EINVAL,
        };
    }

    /// <summary>preadv/pwritev until every byte moved; a short transfer carries on as <see cref="TransferProgress"/> says.</summary>
    private static int Transfer(int fd, in BlockRequest request, bool write, Func<BlockRequest, int, int>? resultOverride)
    {
        var vectors = (IoVec*)request.Buffers.Vectors;
        int count = request.Buffers.Count;
        var progress = new TransferProgress();
        int failures = 0;
        IoVec* rest = stackalloc IoVec[count];
        while (true)
        {
            long startBytes = progress.StartBytes;
            int restCount = Skip(vectors, count, startBytes, rest);
            nint n = write
                ? BlockIoctl.pwritev(fd, rest, restCount, request.OffsetBytes + startBytes)
                : BlockIoctl.preadv(fd, rest, restCount, request.OffsetBytes + startBytes);
            // Linux moves at most 2 GiB - 4 KiB in one call, so the count fits an int.
            int result = n >= 0 ? (int)n : -Marshal.GetLastPInvokeError();
            if (resultOverride != null) result = resultOverride(request, result);
            if (result == -LibC.EINTR) continue;
            if (result < 0)
            {
                if (!TransientErrors.IsTransient(-result, queueDisposing: false) || ++failures >= TransientErrors.MaxAttempts) return -result;
                Thread.Sleep((int)TransientErrors.BackoffMilliseconds(failures)); // a thread of the blocking queue: it may wait
                continue;
            }
            if (progress.Account(request, result, out int error)) return error;
        }
    }

    /// <summary>Copies the vectors that remain after <paramref name="skipBytes"/> into <paramref name="rest"/>.</summary>
    internal static int Skip(IoVec* vectors, int count, long skipBytes, IoVec* rest)
    {
        int n = 0;
        for (int i = 0; i < count; i++)
        {
            long length = vectors[i].Length;
            if (skipBytes >= length) { skipBytes -= length; continue; }
            rest[n].Base = vectors[i].Base + (nint)skipBytes;
            rest[n].Length = (nint)(length - skipBytes);
            skipBytes = 0;
            n++;
        }
        return n;
    }

    private static int WriteZeroes(int fd, bool isBlockDevice, long offset, long length)
    {
        int errno = RangeOperation(fd, isBlockDevice, BlockIoctl.BLKZEROOUT, BlockIoctl.FALLOC_FL_ZERO_RANGE, offset, length);
        // No zero-range fast path on this device or filesystem: write zeros instead. EIO from BLKZEROOUT too: the
        // loop driver turns every failure of its file's fallocate into EIO (a full filesystem's ENOSPC as well), and
        // written zeros either succeed or fail with the errno that names the cause.
        return errno is Errno.EOPNOTSUPP or Errno.EINVAL or Errno.ENOTTY || (errno == Errno.EIO && isBlockDevice)
            ? WriteZeroPages(fd, offset, length) : errno;
    }

    /// <summary>A hole in a file (it reads back as zeros); a filesystem that cannot punch one gets zeros written.</summary>
    private static int PunchZeroes(int fd, bool isBlockDevice, long offset, long length)
    {
        if (isBlockDevice) return WriteZeroes(fd, isBlockDevice, offset, length);
        int rc = LibC.fallocate(fd, BlockIoctl.FALLOC_FL_PUNCH_HOLE | BlockIoctl.FALLOC_FL_KEEP_SIZE, offset, length);
        int errno = rc == 0 ? 0 : Errno.Last;
        return errno is Errno.EOPNOTSUPP or Errno.EINVAL ? WriteZeroes(fd, isBlockDevice, offset, length) : errno;
    }

    private static int WriteZeroPages(int fd, long offset, long length)
    {
        IoVec vector;
        while (length > 0)
        {
            long chunk = Math.Min(length, ZeroBuffer.LengthBytes);
            vector.Base = ZeroBuffer.Address;
            vector.Length = (nint)chunk;
            var request = new BlockRequest(BlockOperation.Write, offset, chunk, new IoBuffers((nint)(&vector), 1), null!, 0);
            int error = Transfer(fd, request, write: true, resultOverride: null);
            if (error != 0) return error;
            offset += chunk;
            length -= chunk;
        }
        return 0;
    }

    private static int Discard(int fd, bool isBlockDevice, long offset, long length)
        => RangeOperation(fd, isBlockDevice, BlockIoctl.BLKDISCARD, BlockIoctl.FALLOC_FL_PUNCH_HOLE, offset, length);

    /// <summary>A byte-range ioctl on a block device, or the matching fallocate mode on a file (keeping its size).</summary>
    private static int RangeOperation(int fd, bool isBlockDevice, int ioctlRequest, int fallocateMode, long offset, long length)
    {
        int rc;
        if (isBlockDevice)
        {
            ulong* range = stackalloc ulong[2] { (ulong)offset, (ulong)length };
            rc = LibC.ioctl(fd, ioctlRequest, range);
        }
        else
        {
            rc = LibC.fallocate(fd, fallocateMode | BlockIoctl.FALLOC_FL_KEEP_SIZE, offset, length);
        }
        return rc == 0 ? 0 : Errno.Last;
    }
}
