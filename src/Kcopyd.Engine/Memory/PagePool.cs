using System.Runtime.InteropServices;

namespace Kcopyd.Engine.Memory;

/// <summary>
/// A client's own bounded pool of aligned native pages (one arena, never garbage-collected). Pages are taken
/// all-or-nothing: a sub-job either gets every page it needs or none, so two jobs of one client can never each
/// hold half of what the other needs.
/// </summary>
public sealed unsafe class PagePool : IDisposable
{
    /// <summary>O_DIRECT needs buffers aligned to the logical block size; 4 KiB covers every device we meet.</summary>
    public const int Alignment = 4096;

    private readonly object _lock = new();
    private readonly int[] _free;
    private int _freeCount;
    private byte* _arena;

    public PagePool(int pageCount, int pageSizeBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pageCount, 1);
        if (pageSizeBytes < Alignment || pageSizeBytes % Alignment != 0)
            throw new ArgumentOutOfRangeException(nameof(pageSizeBytes), pageSizeBytes, $"A page is a positive multiple of {Alignment} bytes.");
        PageCount = pageCount;
        PageSizeBytes = pageSizeBytes;
        _arena = (byte*)NativeMemory.AlignedAlloc((nuint)pageCount * (nuint)pageSizeBytes, Alignment);
        _free = new int[pageCount];
        for (int i = 0; i < pageCount; i++) _free[i] = pageCount - 1 - i;
        _freeCount = pageCount;
    }

    public int PageCount { get; }

    public int PageSizeBytes { get; }

    public int FreePages => Volatile.Read(ref _freeCount);

    /// <summary>Takes <paramref name="count"/> pages into <paramref name="pages"/>, or none at all.</summary>
    public bool TryTake(int count, Span<int> pages)
    {
        if (count > PageCount)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"The pool holds only {PageCount} pages.");
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_arena == null, this);
            if (_freeCount < count) return false;
            for (int i = 0; i < count; i++) pages[i] = _free[--_freeCount];
            return true;
        }
    }

    public void Return(ReadOnlySpan<int> pages)
    {
        lock (_lock)
        {
            foreach (int page in pages) _free[_freeCount++] = page;
        }
    }

    public nint AddressOf(int page) => (nint)(_arena + (long)page * PageSizeBytes);

    /// <summary>Frees the arena. Every page must be back: a missing one means a job still uses it.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_arena == null) return;
            if (_freeCount != PageCount)
                throw new InvalidOperationException($"{PageCount - _freeCount} pages are still in use.");
            NativeMemory.AlignedFree(_arena);
            _arena = null;
        }
    }
}
