using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Mirror;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// The log reader against random and mutated files (fixed seeds): it never crashes, and never accepts a log that
/// calls a region in sync that the real log calls out of sync.
/// </summary>
public sealed class LogReaderFuzzTests : IDisposable
{
    private const int Seed = 20261202;
    private const long Region = 64 * 1024;
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Ten_thousand_mutated_logs_are_refused_or_read_as_a_state_the_log_really_had()
    {
        var random = new Random(Seed);
        int accepted = 0, refused = 0, rounds = FuzzScale.Times(10);
        for (int round = 0; round < rounds; round++)
        {
            long regions = random.Next(1, 40_000);
            var (file, states) = RealLog(random, regions);
            for (int i = 0; i < 1000; i++)
            {
                byte[] mutated = Mutate(random, file, regions);
                var read = LogFormat.TryDecodeFile(mutated, out string why);
                if (read == null)
                {
                    Assert.False(string.IsNullOrEmpty(why));
                    refused++;
                    continue;
                }
                accepted++;
                Assert.Contains(states, state => state.AsSpan().SequenceEqual(read.Value.Clean));
            }
        }
        Assert.True(refused > 1000 && accepted > 1000, $"{accepted} accepted, {refused} refused: the mutations should hit both");
        FuzzScale.Report("log reader: mutated logs", $"{accepted + refused} cases ({accepted} read as a real state, {refused} refused), seed {Seed}");
    }

    [Fact]
    public void Random_files_are_never_read_as_a_log()
    {
        var random = new Random(Seed + 1);
        int cases = FuzzScale.Times(2000);
        for (int i = 0; i < cases; i++)
        {
            var bytes = new byte[random.Next(0, 64 * 1024)];
            random.NextBytes(bytes);
            if (bytes.Length >= 8 && random.Next(2) == 0) LogFormat.Magic.CopyTo(bytes, 0);
            Assert.Null(LogFormat.TryDecodeFile(bytes, out _));
        }
        FuzzScale.Report("log reader: random files", $"{cases} cases, none read as a log, seed {Seed + 1}");
    }

    [Fact]
    public void Opening_mutated_log_files_as_a_mirror_log_fails_only_with_a_Kcopyd_error_and_leaves_them_as_they_were()
    {
        var random = new Random(Seed + 2);
        const long regions = 300;
        var (file, _) = RealLog(random, regions);
        var legs = Legs();
        string path = Path.Combine(_scratch.Folder, "fuzz.log");
        int cases = FuzzScale.Times(200);
        for (int i = 0; i < cases; i++)
        {
            byte[] mutated = Mutate(random, file, regions);
            File.WriteAllBytes(path, mutated);
            try
            {
                DiskDirtyLog.Open(path, Region, regions, legs, noSync: false).Dispose();
            }
            catch (KcopydException ex)
            {
                Assert.Contains(ex.ErrorId, new[] { "LogCorrupt", "LogMismatch", "LegIdentityMismatch" });
                Assert.Equal(mutated, File.ReadAllBytes(path));
            }
            File.Delete(path);
        }
        FuzzScale.Report("log reader: mutated log files opened as a mirror log", $"{cases} cases, seed {Seed + 2}");
    }

    /// <summary>
    /// A log file written by the real writer, with the slots in the middle of a flush: slot A has the newer state,
    /// slot B the older. Either is a state the log really had; returns both.
    /// </summary>
    private (byte[] File, byte[][] States) RealLog(Random random, long regions)
    {
        string path = Path.Combine(_scratch.Folder, $"real-{regions}.log");
        byte[] older, newer;
        using (var log = DiskDirtyLog.Open(path, Region, regions, Legs(), noSync: true))
        {
            for (int i = 0; i < Math.Min(regions, 50); i++) log.SetRegionSync(random.NextInt64(regions), false);
            log.Flush(includeClears: true);
        }
        older = File.ReadAllBytes(path);
        using (var log = DiskDirtyLog.Open(path, Region, regions, Legs(), noSync: false))
        {
            for (int i = 0; i < Math.Min(regions, 20); i++) log.SetRegionSync(random.NextInt64(regions), false);
            log.Flush(includeClears: true);
        }
        newer = File.ReadAllBytes(path);
        File.Delete(path);
        long slot = LogFormat.SlotBytes(regions);
        var file = (byte[])newer.Clone();
        Array.Copy(older, slot, file, slot, slot); // the crash came between the two slots of the last flush
        var states = new[] { LogFormat.TryDecode(newer, out _)!.Value.Clean, LogFormat.TryDecode(older, out _)!.Value.Clean };
        return (file, states);
    }

    private static byte[] Mutate(Random random, byte[] file, long regions)
    {
        var bytes = (byte[])file.Clone();
        long slot = LogFormat.SlotBytes(regions);
        switch (random.Next(8))
        {
            case 0: // one flipped bit anywhere
                bytes[random.Next(bytes.Length)] ^= (byte)(1 << random.Next(8));
                break;
            case 1: // a flipped bit in each slot
                bytes[random.Next((int)slot)] ^= (byte)(1 << random.Next(8));
                bytes[slot + random.Next((int)slot)] ^= (byte)(1 << random.Next(8));
                break;
            case 2: // a torn write: a run of sectors of one slot zeroed or left random
                {
                    int start = random.Next(bytes.Length / 512) * 512, length = random.Next(1, 9) * 512;
                    var junk = new byte[Math.Min(length, bytes.Length - start)];
                    if (random.Next(2) == 0) random.NextBytes(junk);
                    junk.CopyTo(bytes, start);
                    break;
                }
            case 3: // cut short
                return bytes[..random.Next(bytes.Length)];
            case 4: // random bytes over the bitmap of both slots
                for (int k = 0; k < random.Next(1, 16); k++) bytes[LogFormat.HeaderBytes + random.Next(LogFormat.BitmapBytes(regions))] = (byte)random.Next(256);
                for (int k = 0; k < random.Next(1, 16); k++) bytes[slot + LogFormat.HeaderBytes + random.Next(LogFormat.BitmapBytes(regions))] = (byte)random.Next(256);
                break;
            case 5: // many flipped bits in the headers
                for (int k = 0; k < random.Next(1, 8); k++) bytes[random.Next(256)] ^= (byte)(1 << random.Next(8));
                break;
            case 6: // the slots swapped
                {
                    var a = bytes[..(int)slot];
                    Array.Copy(bytes, slot, bytes, 0, slot);
                    a.CopyTo(bytes, slot);
                    break;
                }
            default: // extra bytes after the slots
                return bytes.Concat(Enumerable.Range(0, random.Next(1, 9000)).Select(_ => (byte)random.Next(256))).ToArray();
        }
        return bytes;
    }

    private static LogLeg[] Legs() =>
        [new LogLeg("file:1:2", "/legs/a.img", 1L << 40, LegHealth.Alive), new LogLeg("file:1:3", "/legs/b.img", 1L << 40, LegHealth.Alive)];
}
