using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// The seed patch at engine level: client A's worker blocks inside a resource that only client B's progress
/// frees. With a worker per client B goes on and frees it; with one worker shared by both (the kcopyd before
/// the patch) nothing moves again, and a bounded wait sees it.
/// </summary>
public sealed class IsolationTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan HangWindow = TimeSpan.FromSeconds(5);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void A_client_blocked_in_a_device_does_not_stall_another_client_that_frees_it()
    {
        using var setup = new Scenario(_scratch);
        using var clientA = new CopyClient(new CopyClientOptions { Name = "client-a" });
        using var clientB = new CopyClient(new CopyClientOptions { Name = "client-b" });

        var (jobA, jobB) = setup.Run(clientA, clientB);

        Assert.Equal("kcopyd/client-a", setup.Gate.BlockedThread);
        Assert.True(jobB.Wait(Bounded), "B did not finish while A was blocked");
        Assert.True(jobA.Wait(Bounded), "A never got past the gate B opens");
        Assert.Equal(CopyJobState.Completed, jobA.State);
        Assert.Equal(CopyJobState.Completed, jobB.State);
        setup.AssertCopied();
    }

    [Fact]
    public void One_worker_shared_by_both_clients_deadlocks_and_the_test_sees_it()
    {
        using var setup = new Scenario(_scratch);
        using var shared = new CopyWorker("shared");
        var clientA = new CopyClient(new CopyClientOptions { Name = "client-a" }, shared);
        var clientB = new CopyClient(new CopyClientOptions { Name = "client-b" }, shared);

        var (jobA, jobB) = setup.Run(clientA, clientB);

        Assert.Equal("kcopyd/shared", setup.Gate.BlockedThread);
        Assert.False(jobB.Wait(HangWindow), "B finished although the only worker was blocked on A's behalf");
        Assert.Equal(0, jobB.BytesCopied);
        Assert.Equal(CopyJobState.Queued, jobB.State);
        Assert.False(jobA.Wait(TimeSpan.Zero));

        // Break the deadlock from outside so everything can be cleaned up.
        setup.Gate.Open();
        Assert.True(jobA.Wait(Bounded) && jobB.Wait(Bounded));
        clientA.Dispose();
        clientB.Dispose();
        setup.AssertCopied();
    }

    /// <summary>A copies into a gated device; B copies elsewhere and opens the gate when it completes.</summary>
    private sealed class Scenario : IDisposable
    {
        private readonly string _source;
        private readonly string _targetA;
        private readonly string _targetB;
        private readonly LinuxBlockDevice _from;
        private readonly LinuxBlockDevice _toB;

        public Scenario(Scratch scratch)
        {
            _source = scratch.Loop("src.img", 8 * MiB);
            _targetA = scratch.Loop("a.img", 8 * MiB);
            _targetB = scratch.Loop("b.img", 8 * MiB);
            Scratch.FillRandom(_source, 0, 8 * MiB, seed: 21);
            _from = LinuxBlockDevice.Open(_source, DeviceOpenOptions.ReadOnly);
            _toB = LinuxBlockDevice.Open(_targetB, DeviceOpenOptions.ReadWrite);
            Gate = new BlockingGateDevice(LinuxBlockDevice.Open(_targetA, DeviceOpenOptions.ReadWrite));
        }

        public BlockingGateDevice Gate { get; }

        public (CopyJob A, CopyJob B) Run(CopyClient clientA, CopyClient clientB)
        {
            var jobA = clientA.Copy(new CopyRequest { Source = _from, Destinations = [new CopyDestination(Gate, 0)], LengthBytes = 8 * MiB });
            Assert.True(Gate.WaitUntilSomeoneBlocks(Bounded), "A never reached the gate");
            var jobB = clientB.Copy(new CopyRequest
            {
                Source = _from, Destinations = [new CopyDestination(_toB, 0)], LengthBytes = 8 * MiB,
                Completed = _ => Gate.Open(),
            });
            return (jobA, jobB);
        }

        public void AssertCopied()
        {
            Scratch.AssertSameBytes(_source, 0, _targetA, 0, 8 * MiB);
            Scratch.AssertSameBytes(_source, 0, _targetB, 0, 8 * MiB);
        }

        public void Dispose()
        {
            Gate.Dispose();
            _toB.Dispose();
            _from.Dispose();
        }
    }
}
