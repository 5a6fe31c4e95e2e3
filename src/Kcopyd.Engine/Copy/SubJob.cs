using System.Runtime.InteropServices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Copy;

/// <summary>What a sub-job does next.</summary>
internal enum SubJobPhase : byte
{
    Read,
    Write,
    Zero,
    /// <summary>Re-reading one destination into the chunk's pages (-Verify).</summary>
    Verify,
    /// <summary>Comparing what was re-read with the source, on the worker.</summary>
    Compare,
}

/// <summary>
/// One chunk of a copy job in flight: its pages, the phase it is in, and the errors its I/O met. Sub-jobs come
/// from the client's object pool and are re-armed for the next chunk while the job has chunks left.
/// </summary>
internal sealed unsafe class SubJob : IBlockCompletion, IDisposable
{
    private readonly IoVec* _vectors;
    private int _pendingIos;
    private long _writeErrorMask;
    private int _errno;

    public SubJob(int maxPages)
    {
        Pages = new int[maxPages];
        ZeroPages = new bool[maxPages];
        _vectors = (IoVec*)NativeMemory.Alloc((nuint)maxPages, (nuint)sizeof(IoVec));
    }

    /// <summary>Link in whichever of the worker's lists holds this sub-job.</summary>
    public SubJob? Next { get; set; }

    public CopyJob Master { get; private set; } = null!;

    public CopyClient Client => Master.Owner;

    public long RelativeOffsetBytes { get; private set; }

    public long LengthBytes { get; private set; }

    public SubJobPhase Phase { get; set; }

    public int[] Pages { get; }

    public int PageCount { get; private set; }

    public bool ReadError { get; private set; }

    public ulong WriteErrorMask => (ulong)Volatile.Read(ref _writeErrorMask);

    /// <summary>The first errno any I/O of this chunk returned, 0 if none.</summary>
    public int Errno => Volatile.Read(ref _errno);

    public bool HasError => ReadError || WriteErrorMask != 0;

    /// <summary>The job was stopping, so this chunk was never issued.</summary>
    public bool Skipped { get; set; }

    public IoBuffers Buffers => new((nint)_vectors, PageCount);

    /// <summary>The pages <paramref name="first"/> to <paramref name="first"/>+<paramref name="count"/> of the chunk.</summary>
    public IoBuffers BuffersOf(int first, int count) => new((nint)(_vectors + first), count);

    /// <summary>Which pages of the chunk hold only zeros (or lie in a hole of the source); found when zeroes are looked for.</summary>
    public bool[] ZeroPages { get; }

    /// <summary>
    /// The whole chunk is a hole of the source: never read, its pages (if any: -Verify) hold no source data. Such a
    /// chunk may be longer than a sub-job (a zeroing chunk) when it needs no pages.
    /// </summary>
    public bool IsHole { get; private set; }

    /// <summary>The hash of the chunk as read from the source, for -Verify.</summary>
    public UInt128 SourceHash { get; set; }

    /// <summary>The destination being re-read (-Verify).</summary>
    public int VerifyIndex { get; set; }

    /// <summary>The re-read of <see cref="VerifyIndex"/> failed: its range counts as a mismatch.</summary>
    public bool VerifyReadFailed { get; set; }

    /// <summary>A -Verify re-read of the chunk differed or failed: the chunk is not finished for a copy map.</summary>
    public bool Mismatched { get; set; }

    /// <summary>How the chunk's bytes went out: written as data, zeroed, or skipped (-DestinationIsZero).</summary>
    public long DataBytes { get; set; }

    public long ZeroedBytes { get; set; }

    public long SkippedBytes { get; set; }

    /// <summary>Past its reads of the source: the throttle never holds it, since it already holds its pages.</summary>
    public bool IsPastRead => Phase is SubJobPhase.Write or SubJobPhase.Verify or SubJobPhase.Compare;

    /// <summary>Marks the pages that hold only zeros.</summary>
    public void FindZeroPages()
    {
        for (int i = 0; i < PageCount; i++)
            ZeroPages[i] = new ReadOnlySpan<byte>((void*)_vectors[i].Base, (int)_vectors[i].Length).IndexOfAnyExcept((byte)0) < 0;
    }

    /// <summary>The chunk's pages hold only zeros.</summary>
    public bool PagesAreZero()
    {
        for (int i = 0; i < PageCount; i++)
            if (new ReadOnlySpan<byte>((void*)_vectors[i].Base, (int)_vectors[i].Length).IndexOfAnyExcept((byte)0) >= 0) return false;
        return true;
    }

    /// <summary>
    /// Fills the pages with a pattern before a re-read, so a read that reports success without filling them (a lying
    /// device, a short transfer somewhere below) cannot leave the source's bytes there to be compared with themselves.
    /// </summary>
    public void PoisonPages()
    {
        for (int i = 0; i < PageCount; i++) new Span<byte>((void*)_vectors[i].Base, (int)_vectors[i].Length).Fill(0xA5);
    }

    /// <summary>XxHash128 of what the chunk's pages hold.</summary>
    public UInt128 HashPages()
    {
        var hash = new System.IO.Hashing.XxHash128();
        for (int i = 0; i < PageCount; i++) hash.Append(new ReadOnlySpan<byte>((void*)_vectors[i].Base, (int)_vectors[i].Length));
        return hash.GetCurrentHashAsUInt128();
    }

    /// <summary>Points the sub-job at its next chunk; a chunk in a hole of the source (every byte zero) is not read.</summary>
    public void Arm(CopyJob master, long relativeOffsetBytes, long lengthBytes, bool hole = false)
    {
        Master = master;
        RelativeOffsetBytes = relativeOffsetBytes;
        LengthBytes = lengthBytes;
        Phase = master.IsZero ? SubJobPhase.Zero : SubJobPhase.Read;
        ReadError = false;
        Skipped = false;
        IsHole = hole;
        if (hole) Phase = SubJobPhase.Write;
        ZeroPages.AsSpan().Clear();
        VerifyIndex = 0;
        VerifyReadFailed = false;
        Mismatched = false;
        DataBytes = ZeroedBytes = SkippedBytes = 0;
        _writeErrorMask = 0;
        _errno = 0;
    }

    /// <summary>Records the pages taken from the pool and points the I/O vectors at them.</summary>
    public void AttachPages(int count, int pageSizeBytes, Func<int, nint> addressOf)
    {
        PageCount = count;
        long left = LengthBytes;
        for (int i = 0; i < count; i++)
        {
            _vectors[i].Base = addressOf(Pages[i]);
            _vectors[i].Length = (nint)Math.Min(left, pageSizeBytes);
            left -= pageSizeBytes;
        }
    }

    public ReadOnlySpan<int> DetachPages()
    {
        var pages = Pages.AsSpan(0, PageCount);
        PageCount = 0;
        return pages;
    }

    /// <summary>
    /// Counts the I/Os about to be issued, plus one held by the issuer so that I/Os finishing while others are
    /// still being submitted cannot complete the chunk early (dm-io's trick); <see cref="ReleaseIssuer"/> drops it.
    /// </summary>
    public void BeginIo(int count) => Volatile.Write(ref _pendingIos, count + 1);

    /// <summary>The end of one I/O, on the I/O queue's thread.</summary>
    public void Completed(int tag, int error)
    {
        if (error != 0 && Phase == SubJobPhase.Verify)
        {
            VerifyReadFailed = true; // not an error of the copy: the range it covers is reported as not verified
        }
        else if (error != 0)
        {
            if (Phase == SubJobPhase.Read) ReadError = true;
            else Interlocked.Or(ref _writeErrorMask, 1L << tag);
            Interlocked.CompareExchange(ref _errno, error, 0);
        }
        Client.Throttle.IoFinished();
        Master.IoAnswered();
        if (Interlocked.Decrement(ref _pendingIos) == 0) Client.Worker.IoDone(this);
    }

    public void ReleaseIssuer()
    {
        if (Interlocked.Decrement(ref _pendingIos) == 0) Client.Worker.IoDone(this);
    }

    public void Reset()
    {
        Master = null!;
        Next = null;
        PageCount = 0;
    }

    public void Dispose() => NativeMemory.Free(_vectors);
}
