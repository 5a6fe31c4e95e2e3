using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Nbd;

namespace Kcopyd.Engine.Tests;

/// <summary>Flush, Discard and WriteZeroes become the NBD commands the server offers, and do without them as documented.</summary>
public sealed class NbdClientCommandTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(30);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_discard_larger_than_the_servers_maximum_trims_the_whole_range()
    {
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "memory", $"{96 * MiB}"));
        using var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite);
        Assert.True(export.CanTrim);
        var ones = Enumerable.Repeat((byte)0xff, 65536).ToArray();
        foreach (long at in new[] { 0, 40 * MiB, 80 * MiB - 65536, 80 * MiB })
            Assert.Equal(0, PendingIo.WriteAndWait(export, at, ones, Bounded));

        // 80 MiB in one request: three NBD_CMD_TRIMs of at most 32 MiB (nbdkit memory gives no maximum).
        Assert.Equal(0, Run(export, BlockOperation.Discard, 0, 80 * MiB));
        foreach (long at in new[] { 0, 40 * MiB, 80 * MiB - 65536 })
            Assert.Equal(new byte[65536], PendingIo.ReadAndWait(export, at, 65536, Bounded));
        Assert.Equal(ones, PendingIo.ReadAndWait(export, 80 * MiB, 65536, Bounded));
    }

    [Fact]
    public void Without_flush_or_trim_a_flush_succeeds_at_once_and_a_discard_is_EOPNOTSUPP()
    {
        // nbdkit's eval plugin offers only what it has scripts for: reads and writes here, so no flush and no trim.
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "eval", "get_size=echo 4194304",
            "pread=dd if=/dev/zero count=$3 iflag=count_bytes status=none", "pwrite=cat >/dev/null"));
        using var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite);
        Assert.True(export.CanWrite);
        Assert.False(export.CanFlush || export.CanTrim);

        Assert.Equal(0, Run(export, BlockOperation.Flush, 0, 0));
        Assert.Equal(95, Run(export, BlockOperation.Discard, 0, MiB));
        Assert.True(export.IsConnected);
    }

    [Fact]
    public void A_request_past_the_end_is_EINVAL_and_never_reaches_the_server()
    {
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "memory", $"{MiB}"));
        using var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite);
        Assert.Equal(22, Run(export, BlockOperation.WriteZeroes, MiB - 4096, 8192));
        using var read = PendingIo.Read(export, MiB, 4096);
        Assert.Equal(22, read.Wait(Bounded));
        Assert.True(export.IsConnected);
    }

    private static int Run(IBlockDevice device, BlockOperation operation, long offset, long length)
    {
        var done = new Completion();
        device.Submit(new BlockRequest(operation, offset, length, IoBuffers.None, done, 0), PendingIo.Queue);
        Assert.True(done.Task.Wait(Bounded), $"the {operation} did not end");
        return done.Task.Result;
    }

    private sealed class Completion : IBlockCompletion
    {
        private readonly TaskCompletionSource<int> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<int> Task => _done.Task;

        public void Completed(int tag, int error) => _done.TrySetResult(error);
    }
}
