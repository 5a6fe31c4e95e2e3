using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// The seed's scenario: mirror A has mirror B as a leg, B has device C as a leg, both are recovering, and B's
/// request pool is full of writes held on B's recovering region while A's recovery copies into B. With a worker per
/// copy client it completes; with one worker shared by A's and B's clients (the pre-patch kcopyd) it hangs.
/// </summary>
public sealed class MirrorDeadlockTests : IDisposable
{
    private const long MiB = 1 << 20;
    private const long Size = 8 * MiB;
    private const int BPoolSize = 4;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan DeadlockWindow = TimeSpan.FromSeconds(6);
    private readonly Scratch _scratch = new();
    private Action? _breakDeadlock;

    public void Dispose()
    {
        // A failed assertion may leave the scenario stuck: unstick it, or disposing the mirrors would wait for ever.
        _breakDeadlock?.Invoke();
        _scratch.Dispose();
    }

    [Fact]
    public void Stacked_recovering_mirrors_with_a_worker_per_client_complete_and_every_leg_matches()
    {
        var s = BuildScenario(sharedWorker: null);

        s.Gate.Open(); // B's recovery read of C goes on; B's own worker finishes the region and frees B's pool

        Assert.True(s.B.WaitForSync(Bounded), $"B did not get in sync: {s.B.GetStatus()}");
        Assert.True(s.A.WaitForSync(Bounded), $"A did not get in sync: {s.A.GetStatus()}");
        foreach (var write in s.HeldWrites) Assert.Equal(0, write.Wait(Bounded));
        Assert.Equal(MirrorState.InSync, s.A.GetStatus().State);
        Assert.Equal(MirrorState.InSync, s.B.GetStatus().State);

        s.A.Flush();
        foreach (var leg in new[] { s.C, s.D }) Scratch.AssertSameBytes(s.X, 0, leg, 0, Size);
        for (int i = 0; i < s.HeldData.Length; i++)
        {
            foreach (var leg in new[] { s.C, s.D, s.X })
                Assert.Equal(s.HeldData[i], Scratch.Read(leg, i * HeldWriteBytes, HeldWriteBytes));
        }
    }

    [Fact]
    public void The_same_scenario_on_one_shared_kcopyd_worker_deadlocks()
    {
        var shared = new CopyWorker("kcopyd-shared");
        _scratch.Track(shared); // disposed after the mirrors that share it
        var s = BuildScenario(shared);
        int sharedThread = shared.ManagedThreadId;

        s.Gate.Open(); // B's recovery read completes, but the only kcopyd thread is stuck inside B's pool for A's write

        Assert.False(s.A.WaitForSync(DeadlockWindow), "A got in sync: the shared worker did not deadlock.");
        var b = s.B.GetStatus();
        // The facts of the seed's deadlock, not just a timeout:
        Assert.Contains(sharedThread, s.B.RequestPool.WaitingThreadIds);           // kcopyd waits in B's pool for A's request
        Assert.Equal(BPoolSize, b.RequestPoolInUse);                               // ...which is full of B's held writes,
        Assert.Equal(BPoolSize, b.HeldWrites);                                     // held on B's recovering region,
        Assert.Equal(RegionState.Recovering, s.B.StateOfRegion(0));
        Assert.Equal(0, s.Gate.Held);                                         // whose copy has its data read
        Assert.Equal(0, b.RecoveredBytes);                                         // but never gets written by kcopyd:
        Assert.Equal(0, b.InSyncRegions);                                          // B's recovery makes no progress.
        Assert.All(s.HeldWrites, w => Assert.False(w.IsCompleted));

        // Break it so everything can be torn down: fail the waiting allocation, as the patch made unnecessary.
        s.B.RequestPool.Abort();
        foreach (var write in s.HeldWrites) Assert.Equal(0, write.Wait(Bounded));
        Assert.True(s.B.WaitForSync(Bounded), $"B did not get in sync after the deadlock was broken: {s.B.GetStatus()}");
    }

    private const long HeldWriteBytes = 64 * 1024;

    private sealed record Scenario(MirrorDevice A, MirrorDevice B, GatedDevice Gate, string C, string D, string X,
        PendingIo[] HeldWrites, byte[][] HeldData);

    /// <summary>
    /// Builds the seed's state: B = [C (reads gated), D] recovering region 0 with its copy's read held at C;
    /// B's pool (4 slots) full of writes held on region 0; A = [X, B] recovering, its worker stuck in B's pool
    /// with the write of A's copy into B. The held writes carry X's own bytes, so whichever of them and A's copy
    /// reaches B last, every leg of A and B ends up equal to X.
    /// </summary>
    private Scenario BuildScenario(CopyWorker? sharedWorker)
    {
        string c = _scratch.Loop("c.img", Size), d = _scratch.Loop("d.img", Size), x = _scratch.Loop("x.img", Size);
        Scratch.FillRandom(c, 0, Size, seed: 11);
        Scratch.FillRandom(x, 0, Size, seed: 12);
        var gate = new GatedDevice(Open(c));
        _scratch.Track(gate);
        var dDevice = Open(d);
        var xDevice = Open(x);

        var b = new MirrorDevice([gate, dDevice], new MirrorOptions { Name = "B", RequestPoolSize = BPoolSize }, sharedWorker, log: null);
        _scratch.Track(b);
        _breakDeadlock = () => { gate.Open(); b.RequestPool.Abort(); };
        Wait.Until(() => gate.Held >= 1, Bounded, "B's recovery reads C");
        Assert.Equal(RegionState.Recovering, b.StateOfRegion(0));

        var heldData = new byte[BPoolSize][];
        var heldWrites = new PendingIo[BPoolSize];
        for (int i = 0; i < BPoolSize; i++)
        {
            heldData[i] = Scratch.Read(x, i * HeldWriteBytes, HeldWriteBytes);
            heldWrites[i] = PendingIo.Write(b, i * HeldWriteBytes, heldData[i]);
            _scratch.Track(heldWrites[i]);
        }
        Wait.Until(() => b.GetStatus() is { HeldWrites: BPoolSize, RequestPoolInUse: BPoolSize }, Bounded, "B's pool is full of held writes");

        var a = new MirrorDevice([xDevice, b], new MirrorOptions { Name = "A" }, sharedWorker, log: null);
        _scratch.Track(a);
        int aWorker = a.Client.Worker.ManagedThreadId;
        Wait.Until(() => b.RequestPool.WaitingThreadIds.Contains(aWorker), Bounded, "A's kcopyd worker waits in B's request pool");
        Assert.Equal(0, b.GetStatus().InSyncRegions);
        return new Scenario(a, b, gate, c, d, x, heldWrites, heldData);
    }

    private LinuxBlockDevice Open(string path)
    {
        var device = LinuxBlockDevice.Open(path, DeviceOpenOptions.ReadWrite);
        _scratch.Track(device);
        return device;
    }
}
