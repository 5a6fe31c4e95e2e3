using System.Diagnostics;
using System.Net.Sockets;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Nbd;

namespace Kcopyd.Engine.Tests;

/// <summary>The end of an NBD device: it lets requests in flight finish, says goodbye, and is bounded whatever the server does.</summary>
public sealed class NbdClientLifetimeTests : IDisposable
{
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(30);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Dispose_waits_for_the_requests_in_flight_then_disconnects_with_NBD_CMD_DISC()
    {
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "-v", "--filter=delay", "memory", "16M", "rdelay=300ms"));
        var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite);
        using var read = PendingIo.Read(export, 0, 65536);

        var clock = Stopwatch.StartNew();
        export.Dispose();
        Assert.True(read.IsCompleted, "Dispose returned before the read in flight ended");
        Assert.Equal(0, read.Wait(Bounded));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"Dispose took {clock.Elapsed}");
        Wait.Until(() => nbd.Output.Contains("client sent NBD_CMD_DISC"), Bounded, "nbdkit saw the soft disconnect");
        Assert.Equal("the device was closed.", export.ConnectionError);
        Assert.Throws<ObjectDisposedException>(() => PendingIo.Read(export, 0, 4096));
    }

    [Fact]
    public void Dispose_with_a_server_that_stopped_answering_returns_within_its_bound_and_ends_the_requests_with_EIO()
    {
        // The pause filter holds every request while paused: a server alive but stuck.
        string control = Path.Combine(_scratch.Folder, "pause.sock");
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "--filter=pause", "memory", "16M", $"pause-control={control}"));
        var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite, new NbdClientOptions { DisposeTimeout = TimeSpan.FromSeconds(1) });
        Assert.Equal('P', SendPauseControl(control, 'p'));
        using var stuck = PendingIo.Read(export, 0, 65536);
        Thread.Sleep(200);
        Assert.False(stuck.IsCompleted);

        var clock = Stopwatch.StartNew();
        export.Dispose();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(6), $"Dispose took {clock.Elapsed}");
        Assert.Equal(5, stuck.Wait(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void Disposing_from_a_completion_returns_and_refuses_what_comes_after()
    {
        var nbd = _scratch.Track(ExternalNbdServer.Nbdkit(_scratch, "memory", "16M"));
        var export = NbdDevice.Open(nbd.Uri, DeviceOpenOptions.ReadWrite);
        var disposer = new DisposingCompletion(export);

        export.Submit(new BlockRequest(BlockOperation.Flush, 0, 0, IoBuffers.None, disposer, 7), PendingIo.Queue);
        Assert.True(disposer.Done.Wait(Bounded), "the completion that disposed the device did not return");
        Assert.Equal(0, disposer.Error);
        Assert.Throws<ObjectDisposedException>(() => PendingIo.Flush(export));
    }

    /// <summary>Sends a command to nbdkit's pause filter; returns its answer ('P' once paused).</summary>
    private static char SendPauseControl(string socket, char command)
    {
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000 };
        client.Connect(new UnixDomainSocketEndPoint(socket));
        client.Send([(byte)command]);
        var answer = new byte[1];
        Assert.Equal(1, client.Receive(answer));
        return (char)answer[0];
    }

    /// <summary>A completion that disposes the device it completes for, on the device's own receiver thread.</summary>
    private sealed class DisposingCompletion(IBlockDevice device) : IBlockCompletion
    {
        public ManualResetEventSlim Done { get; } = new();

        public int Error { get; private set; } = -1;

        public void Completed(int tag, int error)
        {
            Error = error;
            device.Dispose();
            Done.Set();
        }
    }
}
