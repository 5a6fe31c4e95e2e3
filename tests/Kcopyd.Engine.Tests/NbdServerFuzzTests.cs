using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Nbd;
using Xunit.Abstractions;
using static Kcopyd.Engine.Nbd.NbdProtocol;

namespace Kcopyd.Engine.Tests;

/// <summary>
/// Random and mutated handshakes, options and requests from many clients at once, over real sockets, against an
/// exported image file. Valid writes only ever aim at one window of it; everything outside must stay as it was.
/// </summary>
public sealed class NbdServerFuzzTests(ITestOutputHelper output) : IDisposable
{
    private const int Seed = 20261202;
    private static readonly int Cases = FuzzScale.Times(10_000);
    private const int Clients = 8;
    private const long MiB = 1 << 20;
    private const long Size = 8 * MiB;
    private const long WindowStart = 4 * MiB;
    private const long WindowEnd = 5 * MiB;
    private const int MaxRequestBytes = 256 * 1024;
    private static readonly TimeSpan CaseBound = TimeSpan.FromSeconds(15);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task Ten_thousand_random_and_mutated_streams_leave_the_server_up_and_every_byte_outside_the_write_window_unchanged()
    {
        string image = _scratch.Image("fuzz.img", Size);
        Scratch.FillRandom(image, 0, Size, seed: Seed);
        string below = Scratch.Sha256(image, 0, WindowStart), above = Scratch.Sha256(image, WindowEnd, Size - WindowEnd);
        var unobserved = new List<Exception>();
        EventHandler<UnobservedTaskExceptionEventArgs> onUnobserved = (_, e) => { lock (unobserved) unobserved.Add(e.Exception); };
        TaskScheduler.UnobservedTaskException += onUnobserved;
        var options = new NbdServerOptions { HandshakeTimeout = TimeSpan.FromSeconds(5), StopTimeout = TimeSpan.FromSeconds(5) };
        var served = NbdServerTests.Served.Start(_scratch, LinuxBlockDevice.Open(image, DeviceOpenOptions.ReadWrite),
            device => new NbdExport(device) { Name = "fuzz", MaxRequestBytes = MaxRequestBytes }, options);
        try
        {
            int block = served.Device.LogicalBlockSize;
            var clock = Stopwatch.StartNew();
            var stuck = new List<int>();
            var workers = Enumerable.Range(0, Clients).Select(worker => Task.Run(async () =>
            {
                for (int i = worker; i < Cases; i += Clients)
                {
                    var random = new Random(unchecked(Seed * 31 + i));
                    var generator = new Generator(random, block);
                    byte[] stream = generator.Case();
                    if (!await RunCaseAsync(served.SocketPath!, stream, abrupt: random.Next(6) == 0))
                        lock (stuck) stuck.Add(i);
                }
            })).ToArray();
            await Task.WhenAll(workers);
            output.WriteLine($"{Cases} cases in {clock.Elapsed.TotalSeconds:0.0} s; {served.Server.GetStatistics()}");
            FuzzScale.Report("NBD server: random and mutated streams", $"{Cases} cases from {Clients} clients in {clock.Elapsed.TotalSeconds:0} s, seed {Seed}; {served.Server.GetStatistics()}");
            Assert.True(stuck.Count == 0, $"the server kept these cases' connections open after the client's end: {string.Join(", ", stuck.Take(20))}");

            // Still up: a valid client writes and reads back, and a real one sees the export.
            using (var client = NbdServerWireTests.Wire.Open(served))
            {
                client.Go(structured: true);
                var data = new byte[65536];
                new Random(Seed).NextBytes(data);
                Assert.Equal(0u, client.Call(CmdWrite, 1, (ulong)WindowStart, 65536, data, flags: CmdFlagFua).Error);
                Assert.Equal(data, client.Call(CmdRead, 2, (ulong)WindowStart, 65536).Data);
                client.Disconnect();
            }
            Assert.Contains("\"export-size\": 8388608", NbdServerTests.Tool.Check("nbdinfo", "--json", served.Uri));
            Wait.Until(() => served.Server.ConnectionCount == 0, CaseBound, "every connection ended");
            Assert.Equal(0, served.Server.BuffersInUse);
            var statistics = served.Server.GetStatistics();
            Assert.True(statistics.TotalConnections >= Cases + 2, statistics.ToString());
            Assert.True(statistics.FailedConnections > Cases / 4, $"only {statistics.FailedConnections} connections failed: is the fuzzer hostile enough?");
            Assert.True(statistics.RequestErrors > 1000 && statistics.BytesWritten > 0, statistics.ToString());
            // Every failure is one the server understood: an exception it did not expect would show its type here.
            string unexpected = string.Join('\n', served.Log.ToString().Split('\n').Where(l => l.Contains("Exception")).Take(10));
            Assert.True(unexpected.Length == 0, unexpected);
        }
        finally
        {
            served.Dispose();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            TaskScheduler.UnobservedTaskException -= onUnobserved;
        }
        Assert.Empty(unobserved);
        Assert.Equal(below, Scratch.Sha256(image, 0, WindowStart));
        Assert.Equal(above, Scratch.Sha256(image, WindowEnd, Size - WindowEnd));
    }

    /// <summary>Sends the stream, then either closes at once or half-closes and reads until the server closes.</summary>
    /// <returns>False if the server kept the connection open past <see cref="CaseBound"/>.</returns>
    private static async Task<bool> RunCaseAsync(string socketPath, byte[] stream, bool abrupt)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var bound = new CancellationTokenSource(CaseBound);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), bound.Token);
        // Replies are read all along, so the server never waits on us while we still send.
        var drain = DrainAsync(socket, bound.Token);
        try
        {
            for (int sent = 0; sent < stream.Length;)
                sent += await socket.SendAsync(stream.AsMemory(sent), SocketFlags.None, bound.Token);
        }
        catch (SocketException)
        {
            // The server closed before it read everything: what it does with broken streams.
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        if (abrupt)
        {
            socket.Close();
            await drain;
            return true;
        }
        try { socket.Shutdown(SocketShutdown.Send); } catch (SocketException) { }
        return await drain;
    }

    private static async Task<bool> DrainAsync(Socket socket, CancellationToken cancellationToken)
    {
        var buffer = new byte[65536];
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken) > 0)
            {
            }
            return true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>
    /// Builds one case's byte stream. Payload bytes are all 0x80 or above, so no request magic (0x25...) can hide in
    /// them: the only requests the server can find are the headers written here, and a mutated header that would
    /// still be a write outside the window is rolled again.
    /// </summary>
    private sealed class Generator(Random random, int block)
    {
        private static readonly ushort[] s_commands =
            [CmdRead, CmdWrite, CmdFlush, CmdTrim, CmdCache, CmdWriteZeroes, CmdBlockStatus, CmdDisconnect, 8, 255, 0xffff];

        private readonly MemoryStream _stream = new();

        public byte[] Case()
        {
            switch (random.Next(100))
            {
                case < 8:
                    Noise(random.Next(0, 300));
                    break;
                case < 28:
                    ClientFlags();
                    for (int n = random.Next(1, 8); n > 0; n--) RandomOption();
                    if (random.Next(3) == 0) Noise(random.Next(1, 64));
                    break;
                case < 58:
                    Handshake();
                    for (int n = random.Next(1, 24); n > 0; n--) Request();
                    break;
                case < 85:
                    Handshake();
                    for (int n = random.Next(0, 6); n > 0; n--) Request();
                    MutatedRequest();
                    break;
                default:
                    Handshake();
                    var handshake = Mutate(_stream.ToArray());
                    _stream.SetLength(0);
                    _stream.Write(handshake);
                    for (int n = random.Next(0, 4); n > 0; n--) Request();
                    break;
            }
            var bytes = _stream.ToArray();
            // A stream cut anywhere: a client gone mid-header, mid-option or mid-payload.
            return random.Next(5) == 0 && bytes.Length > 0 ? bytes[..random.Next(bytes.Length)] : bytes;
        }

        private void ClientFlags() => U32(random.Next(10) == 0 ? (uint)random.Next() : ClientFlagFixedNewstyle | (uint)random.Next(2) * ClientFlagNoZeroes);

        private void Handshake()
        {
            U32(ClientFlagFixedNewstyle | (uint)random.Next(2) * ClientFlagNoZeroes);
            if (random.Next(2) == 0) Option(OptStructuredReply, []);
            if (random.Next(4) == 0) Option(OptList, []);
            if (random.Next(4) == 0) Option(OptInfo, InfoData(random.Next(2) == 0 ? "fuzz" : "other"));
            if (random.Next(6) == 0) Option(OptExportName, Encoding.UTF8.GetBytes(random.Next(2) == 0 ? "" : "fuzz"));
            else Option(OptGo, InfoData(random.Next(2) == 0 ? "" : "fuzz"));
        }

        private void RandomOption()
        {
            uint option = random.Next(3) == 0 ? (uint)random.Next() : (uint)random.Next(0, 13);
            int kind = random.Next(10);
            if (kind == 0)
            {
                // An oversize option: its length alone must end the connection.
                U64(IHaveOpt); U32(option); U32((uint)random.NextInt64(MaxOptionLength + 1, uint.MaxValue + 1L));
                Noise(random.Next(0, 100));
            }
            else if (kind == 1)
            {
                U64((ulong)random.NextInt64()); U32(option); U32((uint)random.Next(0, 64)); // a bad magic
            }
            else if (kind < 5 && option is OptGo or OptInfo)
            {
                Option(option, InfoData(random.Next(2) == 0 ? "fuzz" : RandomName()));
            }
            else
            {
                var data = new byte[random.Next(0, kind == 9 ? MaxOptionLength + 1 : 40)];
                random.NextBytes(data);
                Option(option, data);
            }
        }

        private string RandomName() => new(Enumerable.Range(0, random.Next(0, 12)).Select(_ => (char)random.Next(1, 0x250)).ToArray());

        private byte[] InfoData(string name)
        {
            var infos = Enumerable.Range(0, random.Next(0, 5)).Select(_ => (ushort)random.Next(0, 6)).ToArray();
            byte[] bytes = Encoding.UTF8.GetBytes(name);
            var data = new byte[4 + bytes.Length + 2 + 2 * infos.Length];
            BinaryPrimitives.WriteUInt32BigEndian(data, (uint)bytes.Length);
            bytes.CopyTo(data, 4);
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + bytes.Length), (ushort)infos.Length);
            for (int i = 0; i < infos.Length; i++) BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + bytes.Length + 2 * i), infos[i]);
            if (random.Next(8) == 0) return data[..random.Next(data.Length)]; // lengths that disagree
            return data;
        }

        private void Option(uint option, byte[] data)
        {
            U64(IHaveOpt); U32(option); U32((uint)data.Length);
            _stream.Write(data);
        }

        /// <summary>A request the server must accept, or one it must refuse without touching the device.</summary>
        private void Request()
        {
            ushort flags = (ushort)(random.Next(3) == 0 ? CmdFlagFua : 0);
            switch (random.Next(14))
            {
                case 0 or 1 or 2:
                    Header(0, CmdRead, (ulong)random.Next(0, (int)(Size / block)) * (ulong)block, Blocks(Size), withPayload: false);
                    break;
                case 3 or 4:
                    var (offset, length) = InWindow();
                    Header(flags, CmdWrite, offset, length, withPayload: true);
                    break;
                case 5:
                    (offset, length) = InWindow();
                    Header((ushort)(flags | (random.Next(2) == 0 ? CmdFlagNoHole : 0)), random.Next(2) == 0 ? CmdWriteZeroes : CmdTrim, offset, length,
                        withPayload: false);
                    break;
                case 6:
                    Header(0, random.Next(2) == 0 ? CmdFlush : CmdCache, 0, random.Next(2) == 0 ? 0 : (uint)block, withPayload: false);
                    break;
                case 7:
                    // Past the end, or wrapping around: refused whatever the command.
                    ushort command = s_commands[random.Next(6)];
                    ulong past = random.Next(2) == 0 ? (ulong)(Size - block) : ulong.MaxValue - (ulong)block + 1;
                    Header(0, command, past, (uint)(2 * block), withPayload: command == CmdWrite);
                    break;
                case 8:
                    // Unaligned, anywhere on the device: refused before it could touch a byte.
                    command = s_commands[random.Next(6)];
                    Header(0, command, (ulong)random.NextInt64(0, Size) | 1, (uint)random.Next(1, 4096), withPayload: command == CmdWrite);
                    break;
                case 9:
                    // Longer than the maximum: a WRITE's payload must be read past, not parsed.
                    command = random.Next(2) == 0 ? CmdWrite : CmdRead;
                    Header(0, command, 0, (uint)(MaxRequestBytes + block * random.Next(1, 4)), withPayload: command == CmdWrite);
                    break;
                case 10:
                    Header(0, s_commands[random.Next(6, s_commands.Length)], (ulong)random.NextInt64(), (uint)random.Next(), withPayload: false);
                    break;
                case 11:
                    Header((ushort)random.Next(0x20, 0x10000), s_commands[random.Next(6)], 0, (uint)block, withPayload: false);
                    break;
                case 12:
                    Header(0, CmdRead, 0, 0, withPayload: false);
                    break;
                default:
                    Header(0, CmdDisconnect, 0, 0, withPayload: false);
                    break;
            }
        }

        /// <summary>One request with its header (and payload) mutated: flipped, overwritten, inserted or removed bytes.</summary>
        private void MutatedRequest()
        {
            for (int attempt = 0; attempt < 20; attempt++)
            {
                var saved = _stream.Length;
                Request();
                var bytes = _stream.ToArray()[(int)saved..];
                _stream.SetLength(saved);
                var mutated = Mutate(bytes);
                if (WritesOutsideWindow(mutated)) continue;
                _stream.Write(mutated);
                return;
            }
        }

        /// <summary>Would the server take this as a write (or zeroing, or trim) that touches bytes outside the window?</summary>
        private static bool WritesOutsideWindow(byte[] bytes)
        {
            if (bytes.Length < RequestHeaderLength || BinaryPrimitives.ReadUInt32BigEndian(bytes) != RequestMagic) return false;
            ushort command = BinaryPrimitives.ReadUInt16BigEndian(bytes.AsSpan(6));
            if (command is not (CmdWrite or CmdTrim or CmdWriteZeroes)) return false;
            ulong offset = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(16));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(24));
            return offset < WindowStart || offset > WindowEnd || length > WindowEnd - (long)offset;
        }

        private byte[] Mutate(byte[] bytes)
        {
            var list = new List<byte>(bytes);
            for (int n = random.Next(1, 4); n > 0 && list.Count > 0; n--)
            {
                int at = random.Next(list.Count);
                switch (random.Next(4))
                {
                    case 0: list[at] ^= (byte)(1 << random.Next(8)); break;
                    case 1: list[at] = (byte)random.Next(256); break;
                    case 2: list.Insert(at, (byte)random.Next(0x80, 0x100)); break;
                    default: list.RemoveAt(at); break;
                }
            }
            return list.ToArray();
        }

        private (ulong Offset, uint Length) InWindow()
        {
            long blocks = (WindowEnd - WindowStart) / block;
            long first = random.NextInt64(0, blocks);
            long count = random.NextInt64(1, Math.Min(blocks - first, 32) + 1);
            return ((ulong)(WindowStart + first * block), (uint)(count * block));
        }

        private uint Blocks(long limit) => (uint)(block * random.Next(1, (int)Math.Min(limit / block, 64 * 1024 / block) + 1));

        private void Header(ushort flags, ushort command, ulong offset, uint length, bool withPayload)
        {
            var header = new byte[RequestHeaderLength];
            WriteRequestHeader(header, flags, command, (ulong)random.Next(0, 1 << 16), offset, length);
            _stream.Write(header);
            if (!withPayload) return;
            var payload = new byte[length];
            for (int i = 0; i < payload.Length; i++) payload[i] = (byte)random.Next(0x80, 0x100);
            _stream.Write(payload);
        }

        private void Noise(int count)
        {
            var bytes = new byte[count];
            random.NextBytes(bytes);
            _stream.Write(bytes);
        }

        private void U32(uint value)
        {
            Span<byte> bytes = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
            _stream.Write(bytes);
        }

        private void U64(ulong value)
        {
            Span<byte> bytes = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(bytes, value);
            _stream.Write(bytes);
        }
    }
}
