using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Native;

namespace Kcopyd.Engine.Tests;

/// <summary>-MapPath: a copy's map of finished chunks, and a copy resumed from it.</summary>
public sealed class CopyMapTests : IDisposable
{
    private const long MiB = 1 << 20;
    private const long Size = 32 * MiB;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private readonly Scratch _scratch = new();
    private readonly string _source;
    private readonly string _target;
    private readonly string _map;

    public CopyMapTests()
    {
        _source = _scratch.Image("src.img", Size);
        Scratch.FillRandom(_source, 0, Size, seed: 71);
        _target = _scratch.Image("dst.img", Size);
        Scratch.FillRandom(_target, 0, Size, seed: 72);
        _map = Path.Combine(_scratch.Folder, "copy.map");
    }

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_stopped_copy_resumed_with_its_map_reads_and_writes_only_the_chunks_the_map_does_not_hold()
    {
        using var client = new CopyClient();
        CopyJob first;
        using (var from = Open(_source, write: false))
        using (var to = Open(_target))
        {
            first = client.Copy(Request(from, to) with { MaxBytesPerSecond = 8 * MiB });
            Assert.True(SpinWait.SpinUntil(() => first.BytesCopied >= 6 * MiB, Bounded));
            first.Stop();
            Assert.True(first.Wait(Bounded));
        }
        Assert.Equal(CopyJobState.Stopped, first.State);
        Assert.InRange(first.BytesCopied, 6 * MiB, Size - 1);
        Assert.Equal("600", Convert.ToString((int)File.GetUnixFileMode(_map), 8));

        using var source = new CountingDevice(Open(_source, write: false));
        using var target = new CountingDevice(Open(_target));
        var second = client.Copy(Request(source, target));
        Assert.True(second.Wait(Bounded));

        Assert.Equal(CopyJobState.Completed, second.State);
        // A stop flushes every finished chunk into the map: the map holds exactly what the first run copied.
        Assert.Equal(first.BytesCopied, second.BytesFromMap);
        Assert.Equal(Size - first.BytesCopied, second.BytesCopied);
        Assert.Equal(Size, second.BytesDone);
        Assert.Equal(Size - second.BytesFromMap, source.BytesOf(BlockOperation.Read));
        Assert.Equal(Size - second.BytesFromMap, target.BytesOf(BlockOperation.Write));
        Assert.Equal(Scratch.Sha256(_source, 0, Size), Scratch.Sha256(_target, 0, Size));
    }

    [Fact]
    public void A_copy_started_again_with_a_complete_map_copies_nothing_and_says_so()
    {
        using var client = new CopyClient();
        using (var from = Open(_source, write: false))
        using (var to = Open(_target))
        {
            var first = client.Copy(Request(from, to));
            Assert.True(first.Wait(Bounded));
            Assert.Equal(CopyJobState.Completed, first.State);
            Assert.Equal(0, first.BytesFromMap);
        }
        using var source = new CountingDevice(Open(_source, write: false));
        using var target = new CountingDevice(Open(_target));
        var again = client.Copy(Request(source, target));
        Assert.True(again.Wait(Bounded));

        Assert.Equal(CopyJobState.Completed, again.State);
        Assert.Equal(Size, again.BytesFromMap);
        Assert.Equal(0, again.BytesCopied);
        Assert.Equal(100, again.PercentComplete);
        Assert.Equal(0, source.BytesOf(BlockOperation.Read) + target.BytesOf(BlockOperation.Write));
    }

    [Fact]
    public void Chunks_are_never_marked_while_the_destination_cannot_flush_them()
    {
        using var client = new CopyClient();
        using (var from = Open(_source, write: false))
        using (var to = new FailingFlushDevice(Open(_target)))
        {
            var job = client.Copy(Request(from, to));
            Assert.True(job.Wait(Bounded));
            Assert.Equal(CopyJobState.Completed, job.State); // every write came back: the copy itself is done
            Assert.True(to.Flushes > 0);
            Assert.Contains(job.Warnings, w => w.Contains("was not updated"));
        }
        using var source = Open(_source, write: false);
        using var target = Open(_target);
        var again = client.Copy(Request(source, target));
        Assert.True(again.Wait(Bounded));
        Assert.Equal(0, again.BytesFromMap); // no flush succeeded, so not one chunk was marked
        Assert.Equal(Size, again.BytesCopied);
    }

    [Fact]
    public void A_chunk_that_fails_verify_is_not_marked()
    {
        using var client = new CopyClient();
        using (var from = Open(_source, write: false))
        using (var to = new DroppingWritesDevice(Open(_target), (4 * MiB, 4096)))
        {
            var job = client.Copy(Request(from, to) with { Verify = true });
            Assert.True(job.Wait(Bounded));
            Assert.Equal(CopyJobState.Failed, job.State);
        }
        using var source = Open(_source, write: false);
        using var target = Open(_target);
        var again = client.Copy(Request(source, target) with { Verify = true });
        Assert.True(again.Wait(Bounded));
        Assert.Equal(CopyJobState.Completed, again.State);
        Assert.Equal(Size - client.Options.SubJobSizeBytes, again.BytesFromMap); // only the chunk that read back wrong
        Assert.Equal(Scratch.Sha256(_source, 0, Size), Scratch.Sha256(_target, 0, Size));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_sparse_copy_resumed_with_its_map_skips_held_chunks_and_still_finds_the_holes(bool destinationIsZero)
    {
        // Data at 0, 10 and 20 MiB (3 MiB each, so chunks straddle the holes' edges); holes of 7 MiB between.
        string source = _scratch.Image("sparse.img", Size);
        foreach (long at in new[] { 0, 10 * MiB, 20 * MiB }) Scratch.FillRandom(source, at, 3 * MiB, seed: (int)(at / MiB) + 80);
        string target = _scratch.Image("sparse-dst.img", Size);
        if (!destinationIsZero) Scratch.FillRandom(target, 0, Size, seed: 79);
        using var client = new CopyClient();
        CopyJob first;
        using (var from = Open(source, write: false))
        using (var to = Open(target))
        {
            first = client.Copy(Request(from, to) with { Sparse = !destinationIsZero, DestinationIsZero = destinationIsZero, MaxBytesPerSecond = 4 * MiB });
            Assert.True(SpinWait.SpinUntil(() => first.BytesDone >= 8 * MiB, Bounded));
            first.Stop();
            Assert.True(first.Wait(Bounded));
        }
        using var source2 = new CountingDevice(Open(source, write: false));
        using var target2 = Open(target);
        var second = client.Copy(Request(source2, target2) with { Sparse = !destinationIsZero, DestinationIsZero = destinationIsZero, Verify = true });
        Assert.True(second.Wait(Bounded));

        Assert.Equal(CopyJobState.Completed, second.State);
        Assert.True(second.BytesFromMap >= 6 * MiB, $"{second.BytesFromMap} bytes from the map");
        Assert.Equal(Size, second.BytesDone);
        Assert.Equal(Size - second.BytesFromMap, second.BytesCopied + second.BytesZeroed + second.BytesSkipped);
        Assert.True(second.BytesZeroed + second.BytesSkipped > 0); // holes after the held chunks were still found
        Assert.Equal(Scratch.Sha256(source, 0, Size), Scratch.Sha256(target, 0, Size));
    }

    public static TheoryData<string> OtherCopies => new() { "source", "destination", "source offset", "destination offset", "length", "destination size" };

    [Theory]
    [MemberData(nameof(OtherCopies))]
    public void A_map_of_another_copy_is_refused_as_MapMismatch_and_nothing_is_written(string differs)
    {
        string other = _scratch.Image("other.img", Size);
        Scratch.FillRandom(other, 0, Size, seed: 73);
        string bigger = _scratch.Image("bigger.img", Size + MiB);
        using var client = new CopyClient();
        using (var from = Open(_source, write: false))
        using (var to = Open(_target))
        {
            var first = client.Copy(Request(from, to) with { LengthBytes = Size - MiB });
            Assert.True(first.Wait(Bounded));
        }
        Scratch.FillRandom(_target, 0, Size, seed: 74);
        string before = Scratch.Sha256(_target, 0, Size), beforeOther = Scratch.Sha256(other, 0, Size), beforeMap = Scratch.Sha256(_map, 0, new FileInfo(_map).Length);

        using var source = Open(differs == "source" ? other : _source, write: false);
        using var target = Open(differs == "destination" ? other : differs == "destination size" ? bigger : _target);
        var request = Request(source, target) with { LengthBytes = Size - MiB };
        request = differs switch
        {
            "source offset" => request with { SourceOffsetBytes = MiB },
            "destination offset" => request with { Destinations = [new CopyDestination(target, MiB)] },
            "length" => request with { LengthBytes = Size - 2 * MiB },
            _ => request,
        };
        var e = Assert.Throws<KcopydException>(() => client.Copy(request));

        Assert.Equal("MapMismatch", e.ErrorId);
        Assert.Equal(before, Scratch.Sha256(_target, 0, Size));
        Assert.Equal(beforeOther, Scratch.Sha256(other, 0, Size));
        Assert.Equal(beforeMap, Scratch.Sha256(_map, 0, new FileInfo(_map).Length));
        Assert.Equal(0, client.ActiveJobs);
    }

    [Fact]
    public void A_spoilt_newest_slot_falls_back_to_the_older_one_and_two_spoilt_slots_are_MapCorrupt()
    {
        using var client = new CopyClient();
        CopyJob first;
        using (var from = Open(_source, write: false))
        using (var to = Open(_target))
        {
            first = client.Copy(Request(from, to) with { MaxBytesPerSecond = 8 * MiB });
            Assert.True(SpinWait.SpinUntil(() => first.BytesCopied >= 12 * MiB, Bounded));
            first.Stop();
            Assert.True(first.Wait(Bounded));
        }
        byte[] map = File.ReadAllBytes(_map);
        int slot = map.Length / 2;
        ulong generationA = BitConverter.ToUInt64(map, 24), generationB = BitConverter.ToUInt64(map, slot + 24);
        int newest = generationA > generationB ? 0 : slot;
        map[newest + 4096] ^= 0xFF; // a torn write of the newest slot: its bitmap no longer matches its checksum
        File.WriteAllBytes(_map, map);

        using (var source = Open(_source, write: false))
        using (var target = Open(_target))
        {
            var resumed = client.Copy(Request(source, target));
            Assert.True(resumed.Wait(Bounded));
            Assert.Equal(CopyJobState.Completed, resumed.State);
            Assert.InRange(resumed.BytesFromMap, 0, first.BytesCopied - 1); // the older state: less, never more
            Assert.Equal(Scratch.Sha256(_source, 0, Size), Scratch.Sha256(_target, 0, Size));
        }

        map = File.ReadAllBytes(_map);
        map[4096] ^= 1;
        map[slot + 4096] ^= 1;
        File.WriteAllBytes(_map, map);
        Scratch.FillRandom(_target, 0, Size, seed: 75);
        string before = Scratch.Sha256(_target, 0, Size);
        using var s2 = Open(_source, write: false);
        using var t2 = Open(_target);
        var e = Assert.Throws<KcopydException>(() => client.Copy(Request(s2, t2)));
        Assert.Equal("MapCorrupt", e.ErrorId);
        Assert.Equal(before, Scratch.Sha256(_target, 0, Size));
    }

    [Fact]
    public void Two_copies_cannot_keep_one_map_at_once()
    {
        using var client = new CopyClient();
        using var from = Open(_source, write: false);
        using var to = Open(_target);
        string other = _scratch.Image("other.img", Size);
        using var to2 = Open(other);
        var running = client.Copy(Request(from, to) with { MaxBytesPerSecond = 4 * MiB });
        try
        {
            var e = Assert.Throws<KcopydException>(() => client.Copy(Request(from, to2)));
            Assert.Equal("MapInUse", e.ErrorId);
        }
        finally
        {
            running.Stop();
            Assert.True(running.Wait(Bounded));
        }
    }

    [Fact]
    public void Copies_with_maps_of_their_own_run_side_by_side_on_one_client_and_both_resume()
    {
        string source2 = _scratch.Image("src2.img", Size), target2 = _scratch.Image("dst2.img", Size), map2 = Path.Combine(_scratch.Folder, "two.map");
        Scratch.FillRandom(source2, 0, Size, seed: 76);
        using var client = new CopyClient();
        for (int run = 0; run < 2; run++)
        {
            using var a = Open(_source, write: false);
            using var b = Open(_target);
            using var c = Open(source2, write: false);
            using var d = Open(target2);
            var one = client.Copy(Request(a, b) with { MaxBytesPerSecond = run == 0 ? 16 * MiB : 0 });
            var two = client.Copy(Request(c, d) with { MapPath = map2, MaxBytesPerSecond = run == 0 ? 16 * MiB : 0 });
            if (run == 0)
            {
                Assert.True(SpinWait.SpinUntil(() => one.BytesCopied >= 4 * MiB && two.BytesCopied >= 4 * MiB, Bounded));
                one.Stop();
                two.Stop();
            }
            Assert.True(one.Wait(Bounded) && two.Wait(Bounded));
            if (run == 1)
            {
                Assert.True(one.BytesFromMap > 0 && two.BytesFromMap > 0);
                Assert.Equal(CopyJobState.Completed, one.State);
                Assert.Equal(CopyJobState.Completed, two.State);
            }
        }
        Assert.Equal(Scratch.Sha256(_source, 0, Size), Scratch.Sha256(_target, 0, Size));
        Assert.Equal(Scratch.Sha256(source2, 0, Size), Scratch.Sha256(target2, 0, Size));
    }

    [Fact]
    public void A_map_that_is_a_symbolic_link_or_a_device_of_the_copy_is_refused()
    {
        using var client = new CopyClient();
        using var from = Open(_source, write: false);
        using var to = Open(_target);
        File.CreateSymbolicLink(_map, Path.Combine(_scratch.Folder, "elsewhere.map"));
        var link = Assert.Throws<KcopydException>(() => client.Copy(Request(from, to)));
        Assert.Equal("InvalidMapPath", link.ErrorId);
        Assert.False(File.Exists(Path.Combine(_scratch.Folder, "elsewhere.map")));

        string before = Scratch.Sha256(_target, 0, Size);
        var onDestination = Assert.Throws<KcopydException>(() => client.Copy(Request(from, to) with { MapPath = _target }));
        Assert.Equal("InvalidMapPath", onDestination.ErrorId);
        Assert.Equal(before, Scratch.Sha256(_target, 0, Size));
    }

    [Fact]
    public void A_zeroing_has_no_map()
    {
        using var client = new CopyClient();
        using var to = Open(_target);
        var e = Assert.Throws<KcopydException>(() => client.Copy(new CopyRequest { Destinations = [new CopyDestination(to, 0)], LengthBytes = MiB, MapPath = _map }));
        Assert.Equal("NotACopy", e.ErrorId);
        Assert.False(File.Exists(_map));
    }

    private CopyRequest Request(IBlockDevice from, IBlockDevice to)
        => new() { Source = from, Destinations = [new CopyDestination(to, 0)], LengthBytes = Size, MapPath = _map };

    private static LinuxBlockDevice Open(string path, bool write = true)
        => LinuxBlockDevice.Open(path, write ? DeviceOpenOptions.ReadWrite : DeviceOpenOptions.ReadOnly);

    /// <summary>A real device whose flushes fail: its writes may still be in a volatile cache.</summary>
    private sealed class FailingFlushDevice(IBlockDevice inner) : DelegatingDevice(inner)
    {
        private int _flushes;

        public int Flushes => Volatile.Read(ref _flushes);

        public override void Submit(in BlockRequest request, IIoQueue queue)
        {
            if (request.Operation == BlockOperation.Flush)
            {
                Interlocked.Increment(ref _flushes);
                request.Completion.Completed(request.Tag, Errno.EIO);
                return;
            }
            Inner.Submit(request, queue);
        }
    }
}
