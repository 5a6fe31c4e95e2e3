using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// Property-style: random client shapes, lengths, offsets and fan-outs, each copy checked byte for byte.
/// The seed is fixed (KCOPYD_TEST_SEED overrides it) and named in every failure.
/// </summary>
public sealed class RandomCopyTests : IDisposable
{
    private const long MiB = 1 << 20;
    private const long DeviceBytes = 24 * MiB;
    private const int Block = 4096;
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Random_jobs_copy_exactly_their_regions()
    {
        int seed = int.TryParse(Environment.GetEnvironmentVariable("KCOPYD_TEST_SEED"), out int s) ? s : 20261124;
        var random = new Random(seed);
        string source = _scratch.Loop("src.img", DeviceBytes);
        Scratch.FillRandom(source, 0, DeviceBytes, seed);
        string[] targets = Enumerable.Range(0, 3).Select(i => _scratch.Image($"dst{i}.img", DeviceBytes)).ToArray();
        using var from = LinuxBlockDevice.Open(source, DeviceOpenOptions.ReadOnly);
        var to = targets.Select(t => LinuxBlockDevice.Open(t, DeviceOpenOptions.ReadWrite)).ToArray();
        try
        {
            for (int round = 0; round < 30; round++)
            {
                int pageSize = Block * (1 << random.Next(0, 5));               // 4 KiB .. 64 KiB
                int subJob = pageSize * (1 << random.Next(0, 6));              // 1 .. 32 pages
                var options = new CopyClientOptions
                {
                    Name = $"random-{round}", PageSizeBytes = pageSize, SubJobSizeBytes = subJob,
                    PageCount = subJob / pageSize * random.Next(1, 4), SubJobsInFlight = random.Next(1, 9),
                };
                long length = Block * (long)random.Next(1, (int)(8 * MiB / Block));
                long sourceOffset = Block * random.NextInt64((DeviceBytes - length) / Block + 1);
                int fanOut = random.Next(1, targets.Length + 1);
                var destinations = to.Take(fanOut)
                    .Select(d => new CopyDestination(d, Block * random.NextInt64((DeviceBytes - length) / Block + 1)))
                    .ToArray();
                string what = $"seed {seed} round {round}: {length} bytes from {sourceOffset} to " +
                              string.Join(", ", destinations.Select(d => d.OffsetBytes)) + $" with {options}";

                using var client = new CopyClient(options);
                var job = client.Copy(new CopyRequest { Source = from, SourceOffsetBytes = sourceOffset, Destinations = destinations, LengthBytes = length });

                Assert.True(job.Wait(TimeSpan.FromSeconds(60)), what);
                Assert.True(job.State == CopyJobState.Completed, $"{what}: {job.State} {job.Error}");
                Assert.True(job.BytesCopied == length, what);
                for (int i = 0; i < fanOut; i++)
                {
                    var expected = Scratch.Read(source, sourceOffset, length);
                    var actual = Scratch.Read(targets[i], destinations[i].OffsetBytes, length);
                    int same = expected.AsSpan().CommonPrefixLength(actual);
                    Assert.True(same == length, $"{what}: destination {i} differs at byte {same}");
                }
            }
        }
        finally
        {
            foreach (var device in to) device.Dispose();
        }
    }
}
