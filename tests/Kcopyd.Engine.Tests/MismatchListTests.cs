using Kcopyd.Engine.Copy;

namespace Kcopyd.Engine.Tests;

/// <summary>The mismatched ranges of a verified copy: merged whatever order the chunks end in, and bounded in count.</summary>
public sealed class MismatchListTests
{
    [Fact]
    public void Chunks_ending_out_of_order_merge_into_one_range_per_run_and_destination()
    {
        var list = new MismatchList(["a", "b"]);
        list.Add(0, 4096, 1024, unreadable: false);
        list.Add(0, 0, 1024, unreadable: false);
        list.Add(1, 1024, 1024, unreadable: false);
        list.Add(0, 2048, 1024, unreadable: false);
        list.Add(0, 1024, 1024, unreadable: false); // joins 0..1024 and 2048..3072 into one
        list.Add(0, 3072, 1024, unreadable: true);  // adjacent but of another kind: a range of its own

        Assert.Equal(
            [new CopyMismatch("a", 0, 3072, false), new CopyMismatch("a", 3072, 1024, true), new CopyMismatch("a", 4096, 1024, false),
             new CopyMismatch("b", 1024, 1024, false)],
            list.ToArray());
        Assert.Equal(6144, list.TotalBytes);
    }

    [Fact]
    public void Past_the_bound_only_the_byte_count_grows_and_the_text_says_how_many_were_left_out()
    {
        var list = new MismatchList(["a"]);
        for (int i = 0; i < MismatchList.MaxRanges + 6; i++) list.Add(0, i * 2L * 4096, 4096, unreadable: false);

        Assert.Equal(MismatchList.MaxRanges, list.ToArray().Length);
        Assert.Equal((MismatchList.MaxRanges + 6) * 4096L, list.TotalBytes);
        Assert.Contains("6 more chunk(s) differed", list.Describe());
    }

    [Fact]
    public void Nothing_added_is_no_error()
    {
        var list = new MismatchList(["a"]);
        Assert.Null(list.Describe());
        Assert.Empty(list.ToArray());
    }
}
