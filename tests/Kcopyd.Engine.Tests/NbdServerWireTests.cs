using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Kcopyd.Engine.Devices;
using Kcopyd.Engine.Io;
using Kcopyd.Engine.Nbd;
using static Kcopyd.Engine.Nbd.NbdProtocol;

namespace Kcopyd.Engine.Tests;

/// <summary>The NBD server byte by byte: a client of the test's own sends exactly what each case needs, valid or not.</summary>
public sealed class NbdServerWireTests : IDisposable
{
    private const long MiB = 1 << 20;
    private const long Size = 8 * MiB;
    private const int DefaultMaxRequestBytes = NbdExport.DefaultMaxRequestBytes;
    private static readonly TimeSpan Bounded = TimeSpan.FromSeconds(30);
    private readonly Scratch _scratch = new();
    private readonly string _image;

    public NbdServerWireTests()
    {
        _image = _scratch.Image("export.img", Size);
        Scratch.FillRandom(_image, 0, Size, seed: 11);
    }

    public void Dispose() => _scratch.Dispose();

    private NbdServerTests.Served Serve(Func<IBlockDevice, NbdExport>? export = null, NbdServerOptions? options = null)
        => NbdServerTests.Served.Start(_scratch, LinuxBlockDevice.Open(_image, DeviceOpenOptions.ReadWrite), export, options);

    [Fact]
    public void Requests_past_the_end_unaligned_or_too_long_are_refused_before_the_device_and_the_connection_goes_on()
    {
        string before = Scratch.Sha256(_image, 0, Size);
        using var served = Serve();
        using var client = Wire.Open(served);
        client.Go(structured: false);

        Assert.Equal(ErrInval, client.Call(CmdRead, 1, Size - 512, 1024).Error);                 // past the end
        Assert.Equal(ErrInval, client.Call(CmdRead, 2, ulong.MaxValue - 511, 1024).Error);       // offset + length wraps
        Assert.Equal(ErrNoSpc, client.Call(CmdWrite, 3, Size, 512, new byte[512]).Error);        // a write past the end
        Assert.Equal(ErrNoSpc, client.Call(CmdWriteZeroes, 4, Size - 512, 1024).Error);
        Assert.Equal(ErrInval, client.Call(CmdTrim, 5, Size, 512).Error);
        Assert.Equal(ErrInval, client.Call(CmdRead, 6, 100, 512).Error);                          // unaligned offset
        Assert.Equal(ErrInval, client.Call(CmdWrite, 7, 0, 100, new byte[100]).Error);            // unaligned length
        Assert.Equal(ErrInval, client.Call(CmdRead, 8, 0, 0).Error);                              // empty
        Assert.Equal(ErrInval, client.Call(CmdRead, 9, 0, (uint)(DefaultMaxRequestBytes + 512)).Error);
        // An oversize WRITE: its payload is read and thrown away, so the next request is found where it should be.
        Assert.Equal(ErrInval, client.Call(CmdWrite, 10, 0, (uint)(DefaultMaxRequestBytes + 512),
            new byte[DefaultMaxRequestBytes + 512]).Error);
        Assert.Equal(ErrInval, client.Call(99, 11, 0, 512).Error);                                // unknown command
        Assert.Equal(ErrInval, client.Call(CmdBlockStatus, 12, 0, 512).Error);                   // no meta context
        Assert.Equal(ErrInval, client.Call(CmdRead, 13, 0, 512, flags: 1 << 9).Error);            // unknown flag
        Assert.Equal(ErrInval, client.Call(CmdWriteZeroes, 14, 0, 512, flags: CmdFlagFastZero).Error); // not advertised
        Assert.Equal(0, served.Server.PeakDeviceRequests);

        var read = client.Call(CmdRead, 15, MiB, 4096);
        Assert.Equal(0u, read.Error);
        Assert.Equal(Scratch.Read(_image, MiB, 4096), read.Data);
        client.Disconnect();
        Assert.Equal(before, Scratch.Sha256(_image, 0, Size));
        Assert.Equal(14, served.Server.GetStatistics().RequestErrors);
    }

    [Fact]
    public void A_read_only_export_refuses_every_write_with_EPERM_and_still_serves_reads()
    {
        string before = Scratch.Sha256(_image, 0, Size);
        using var served = Serve(device => new NbdExport(device) { ReadOnly = true });
        using var client = Wire.Open(served);
        var go = client.Go(structured: true);
        Assert.NotEqual(0, go.Flags & FlagReadOnly);
        Assert.Equal(0, go.Flags & (FlagSendTrim | FlagSendWriteZeroes | FlagSendFua | FlagSendFlush));

        Assert.Equal(ErrPerm, client.Call(CmdWrite, 1, 0, 4096, new byte[4096]).Error);
        Assert.Equal(ErrPerm, client.Call(CmdWrite, 2, 0, 4096, new byte[4096], flags: CmdFlagFua).Error);
        Assert.Equal(ErrPerm, client.Call(CmdTrim, 3, 0, 4096).Error);
        Assert.Equal(ErrPerm, client.Call(CmdWriteZeroes, 4, 0, 4096).Error);
        Assert.Equal(0u, client.Call(CmdFlush, 5, 0, 0).Error);
        var read = client.Call(CmdRead, 6, 0, 4096);
        Assert.Equal(0u, read.Error);
        Assert.Equal(Scratch.Read(_image, 0, 4096), read.Data);
        client.Disconnect();
        Assert.Equal(before, Scratch.Sha256(_image, 0, Size));
    }

    [Fact]
    public void With_structured_replies_a_read_is_one_offset_data_chunk_and_a_refused_read_an_error_chunk()
    {
        using var served = Serve();
        using var client = Wire.Open(served);
        client.Go(structured: true);

        client.Send(CmdRead, 1, 2 * MiB, 8192);
        var chunk = client.ReadChunk();
        Assert.Equal((StructuredReplyMagic, ReplyFlagDone, ReplyTypeOffsetData, 1UL), (chunk.Magic, chunk.Flags, chunk.Type, chunk.Cookie));
        Assert.Equal((ulong)(2 * MiB), BinaryPrimitives.ReadUInt64BigEndian(chunk.Payload));
        Assert.Equal(Scratch.Read(_image, 2 * MiB, 8192), chunk.Payload[8..]);

        client.Send(CmdRead, 2, Size, 512);
        chunk = client.ReadChunk();
        Assert.Equal((StructuredReplyMagic, ReplyFlagDone, ReplyTypeError, 2UL), (chunk.Magic, chunk.Flags, chunk.Type, chunk.Cookie));
        Assert.Equal(ErrInval, BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload));

        // Writes keep simple replies, which the protocol allows.
        Assert.Equal(0u, client.Call(CmdWrite, 3, 0, 512, new byte[512], flags: CmdFlagFua).Error);
        client.Disconnect();
    }

    [Fact]
    public void Requests_pipelined_without_waiting_are_all_answered_with_their_own_cookies()
    {
        using var served = Serve();
        using var client = Wire.Open(served);
        client.Go(structured: false);

        var random = new Random(12);
        var expected = new Dictionary<ulong, long>();
        for (ulong cookie = 1000; cookie < 1200; cookie++)
        {
            long offset = random.Next(0, (int)(Size / 4096) - 16) * 4096L;
            expected[cookie] = offset;
            client.Send(CmdRead, cookie, (ulong)offset, 65536);
        }
        for (int i = 0; i < 200; i++)
        {
            var reply = client.ReadSimpleReply(expectDataOf: _ => 65536);
            Assert.Equal(0u, reply.Error);
            Assert.True(expected.Remove(reply.Cookie, out long offset), $"cookie {reply.Cookie} unknown or answered twice");
            Assert.Equal(Scratch.Read(_image, offset, 65536), reply.Data);
        }
        Assert.Empty(expected);
        Assert.True(served.Server.PeakDeviceRequests > 1, "the reads never overlapped");
        client.Disconnect();
    }

    [Fact]
    public void A_client_that_does_not_read_its_replies_is_no_longer_read_once_its_budget_is_full()
    {
        var options = new NbdServerOptions { MaxRequestsPerConnection = 8, MaxBufferBytesPerConnection = 4 * MiB };
        using var served = Serve(options: options);
        using var client = Wire.Open(served);
        var go = client.Go(structured: false);
        Assert.Equal(4 * MiB, go.MaximumBlockSize); // the maximum never exceeds what one connection may hold

        for (ulong cookie = 0; cookie < 100; cookie++) client.Send(CmdRead, cookie, 0, 65536);
        Thread.Sleep(500);
        long requests = served.Server.GetStatistics().Requests;
        Assert.True(requests < 100, $"the server read all {requests} requests while their replies were not read");
        Assert.True(served.Server.PeakDeviceRequests <= 8, $"{served.Server.PeakDeviceRequests} requests at the device at once");

        for (int i = 0; i < 100; i++) Assert.Equal(0u, client.ReadSimpleReply(expectDataOf: _ => 65536).Error);
        client.Disconnect();
        Wait.Until(() => served.Server.ConnectionCount == 0, Bounded, "the connection ended");
        Assert.Equal(0, served.Server.BuffersInUse);
    }

    [Fact]
    public void The_handshake_answers_each_option_as_the_protocol_says_and_a_wrong_name_can_be_corrected()
    {
        using var served = Serve(device => new NbdExport(device) { Name = "disk", Description = "the test disk" });
        using var client = Wire.Open(served);
        ushort handshakeFlags = client.Greet(ClientFlagFixedNewstyle | ClientFlagNoZeroes);
        Assert.Equal(FlagFixedNewstyle | FlagNoZeroes, handshakeFlags);

        client.SendOption(OptList, []);
        var server = client.ReadOptionReply();
        Assert.Equal(RepServer, server.Type);
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32BigEndian(server.Data));
        Assert.Equal("disk", Encoding.UTF8.GetString(server.Data, 4, 4));
        Assert.Equal(RepAck, client.ReadOptionReply().Type);

        client.SendOption(OptStartTls, []);
        Assert.Equal(RepErrUnsup, client.ReadOptionReply().Type);
        client.SendOption(OptListMetaContext, new byte[8]);
        Assert.Equal(RepErrUnsup, client.ReadOptionReply().Type);
        client.SendOption(12345, [1, 2, 3]);
        Assert.Equal(RepErrUnsup, client.ReadOptionReply().Type);
        client.SendOption(OptStructuredReply, [0]);
        Assert.Equal(RepErrInvalid, client.ReadOptionReply().Type);
        client.SendOption(OptGo, [0, 0, 0, 9, 1]); // a name length past the data
        Assert.Equal(RepErrInvalid, client.ReadOptionReply().Type);
        client.SendOption(OptGo, Wire.InfoRequest("other"));
        Assert.Equal(RepErrUnknown, client.ReadOptionReply().Type);

        client.SendOption(OptInfo, Wire.InfoRequest("disk", InfoName, InfoDescription));
        var infos = client.ReadInfoReplies();
        Assert.Equal("disk", Encoding.UTF8.GetString(infos[InfoName]));
        Assert.Equal("the test disk", Encoding.UTF8.GetString(infos[InfoDescription]));
        Assert.True(infos.ContainsKey(InfoBlockSize), "INFO_BLOCK_SIZE is sent unasked");

        client.SendOption(OptGo, Wire.InfoRequest(""));  // the default export is this one
        var go = client.ReadInfoReplies();
        Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(go[InfoExport]));
        Assert.Equal(0u, client.Call(CmdFlush, 1, 0, 0).Error);
        client.Disconnect();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void The_old_export_name_option_enters_transmission_and_honours_no_zeroes(bool noZeroes)
    {
        using var served = Serve();
        using var client = Wire.Open(served);
        client.Greet(ClientFlagFixedNewstyle | (noZeroes ? ClientFlagNoZeroes : 0));
        client.SendOption(OptExportName, []);
        var reply = client.Receive(10 + (noZeroes ? 0 : 124));
        Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(reply));
        Assert.NotEqual(0, BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8)) & FlagSendWriteZeroes);
        Assert.All(reply[10..], b => Assert.Equal(0, b));
        Assert.Equal(0u, client.Call(CmdRead, 7, 0, 512).Error);
        client.Disconnect();
    }

    [Fact]
    public void Broken_handshakes_close_that_connection_only()
    {
        using var served = Serve(options: new NbdServerOptions { HandshakeTimeout = TimeSpan.FromSeconds(1) });
        using var good = Wire.Open(served);
        good.Go(structured: true);

        using (var badMagic = Wire.Open(served))
        {
            badMagic.Greet(ClientFlagFixedNewstyle);
            badMagic.SendRaw(new byte[16]);
            Assert.True(badMagic.ClosedByServer(Bounded));
        }
        using (var oversize = Wire.Open(served))
        {
            oversize.Greet(ClientFlagFixedNewstyle);
            oversize.SendOptionHeader(OptGo, MaxOptionLength + 1);
            Assert.Equal(RepErrTooBig, oversize.ReadOptionReply().Type);
            Assert.True(oversize.ClosedByServer(Bounded));
        }
        using (var unknownFlags = Wire.Open(served))
        {
            unknownFlags.Greet(1u << 7);
            Assert.True(unknownFlags.ClosedByServer(Bounded));
        }
        using (var unknownExport = Wire.Open(served))
        {
            unknownExport.Greet(ClientFlagFixedNewstyle);
            unknownExport.SendOption(OptExportName, Encoding.UTF8.GetBytes("nope"));
            Assert.True(unknownExport.ClosedByServer(Bounded));
        }
        using (var aborting = Wire.Open(served))
        {
            aborting.Greet(ClientFlagFixedNewstyle);
            aborting.SendOption(OptAbort, []);
            Assert.Equal(RepAck, aborting.ReadOptionReply().Type);
            Assert.True(aborting.ClosedByServer(Bounded));
        }
        using (var silent = Wire.Open(served))
        {
            silent.Greet(ClientFlagFixedNewstyle);
            Assert.True(silent.ClosedByServer(Bounded), "the handshake timeout did not drop a silent client");
        }

        Assert.Equal(0u, good.Call(CmdRead, 1, 0, 512).Error);
        good.Disconnect();
        Wait.Until(() => served.Server.ConnectionCount == 0, Bounded, "every connection ended");
        Assert.Equal(5, served.Server.GetStatistics().FailedConnections); // abort is no failure
        Assert.DoesNotContain("Exception", served.Log.ToString());
    }

    [Fact]
    public void A_bad_request_magic_or_a_client_gone_mid_payload_ends_that_connection_and_not_the_others()
    {
        using var served = Serve();
        using var good = Wire.Open(served);
        good.Go(structured: false);

        using (var badMagic = Wire.Open(served))
        {
            badMagic.Go(structured: false);
            badMagic.SendRaw(new byte[RequestHeaderLength]);
            Assert.True(badMagic.ClosedByServer(Bounded));
        }
        using (var midPayload = Wire.Open(served))
        {
            midPayload.Go(structured: false);
            midPayload.Send(CmdWrite, 1, 0, 65536);
            midPayload.SendRaw(new byte[1000]);
            midPayload.ShutdownSend();
            var reply = midPayload.ReadSimpleReply(expectDataOf: _ => 0);
            Assert.Equal((ErrInval, 1UL), (reply.Error, reply.Cookie));
            Assert.True(midPayload.ClosedByServer(Bounded));
        }
        Assert.Equal(Scratch.Read(_image, 0, 4096), good.Call(CmdRead, 2, 0, 4096).Data);
        good.Disconnect();
        Wait.Until(() => served.Server.ConnectionCount == 0, Bounded, "every connection ended");
        Assert.Equal(0, served.Server.BuffersInUse);
        Assert.Equal(2, served.Server.GetStatistics().FailedConnections);
    }

    [Fact]
    public async Task Stopping_with_a_read_held_by_the_device_is_bounded_and_the_buffer_is_freed_when_the_read_ends()
    {
        var gated = new GatedDevice(LinuxBlockDevice.Open(_image, DeviceOpenOptions.ReadWrite));
        var served = NbdServerTests.Served.Start(_scratch, gated, options: new NbdServerOptions { StopTimeout = TimeSpan.FromSeconds(1) });
        try
        {
            using var client = Wire.Open(served);
            client.Go(structured: false);
            client.Send(CmdRead, 1, 0, 65536);
            Wait.Until(() => gated.Held == 1, Bounded, "the device holds the read");
            await served.Server.StopAsync().WaitAsync(Bounded);
            Assert.True(client.ClosedByServer(Bounded));
            Assert.Equal(1, served.Server.BuffersInUse); // the device may still write into it

            gated.Open();
            Wait.Until(() => served.Server.BuffersInUse == 0, Bounded, "the buffer was freed");
        }
        finally
        {
            gated.Open();
            served.Dispose();
        }
    }

    [Fact]
    public void A_client_that_disconnects_while_its_requests_are_in_flight_leaves_nothing_behind()
    {
        var gated = new GatedDevice(LinuxBlockDevice.Open(_image, DeviceOpenOptions.ReadWrite), BlockOperation.Write);
        using var served = NbdServerTests.Served.Start(_scratch, gated);
        string before = Scratch.Sha256(_image, 0, Size);
        using (var client = Wire.Open(served))
        {
            client.Go(structured: false);
            var data = new byte[65536];
            new Random(13).NextBytes(data);
            for (ulong cookie = 0; cookie < 10; cookie++) client.Send(CmdWrite, cookie, cookie * 65536, 65536, data);
            Wait.Until(() => gated.Held == 10, Bounded, "the device holds the writes");
        }
        Assert.Equal(1, served.Server.ConnectionCount); // it still answers what it has in flight
        gated.Open();
        Wait.Until(() => served.Server.ConnectionCount == 0, Bounded, "the connection ended");
        Assert.Equal(0, served.Server.BuffersInUse);
        Assert.NotEqual(before, Scratch.Sha256(_image, 0, Size)); // complete writes the client sent are done
    }

    /// <summary>A raw NBD client: blocking calls with a receive timeout, each assert naming what was expected.</summary>
    internal sealed class Wire : IDisposable
    {
        private readonly Socket _socket;

        private Wire(Socket socket) => _socket = socket;

        public static Wire Open(NbdServerTests.Served served, int timeoutMilliseconds = 30_000)
        {
            var socket = served.Connect();
            socket.ReceiveTimeout = timeoutMilliseconds;
            socket.SendTimeout = timeoutMilliseconds;
            return new Wire(socket);
        }

        public static byte[] InfoRequest(string name, params ushort[] infos)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(name);
            var data = new byte[4 + bytes.Length + 2 + 2 * infos.Length];
            BinaryPrimitives.WriteUInt32BigEndian(data, (uint)bytes.Length);
            bytes.CopyTo(data, 4);
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + bytes.Length), (ushort)infos.Length);
            for (int i = 0; i < infos.Length; i++) BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + bytes.Length + 2 * i), infos[i]);
            return data;
        }

        /// <summary>Reads the greeting, sends the client flags, returns the server's handshake flags.</summary>
        public ushort Greet(uint clientFlags)
        {
            var greeting = Receive(18);
            Assert.Equal(NbdMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting));
            Assert.Equal(IHaveOpt, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
            var flags = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(flags, clientFlags);
            SendRaw(flags);
            return BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
        }

        /// <summary>The whole handshake through NBD_OPT_GO for the default export.</summary>
        public (ushort Flags, int MinimumBlockSize, long MaximumBlockSize) Go(bool structured)
        {
            Greet(ClientFlagFixedNewstyle | ClientFlagNoZeroes);
            if (structured)
            {
                SendOption(OptStructuredReply, []);
                Assert.Equal(RepAck, ReadOptionReply().Type);
            }
            SendOption(OptGo, InfoRequest("", InfoBlockSize));
            var infos = ReadInfoReplies();
            var sizes = infos[InfoBlockSize];
            return (BinaryPrimitives.ReadUInt16BigEndian(infos[InfoExport].AsSpan(8)),
                (int)BinaryPrimitives.ReadUInt32BigEndian(sizes), BinaryPrimitives.ReadUInt32BigEndian(sizes.AsSpan(8)));
        }

        public void SendOptionHeader(uint option, int length)
        {
            var header = new byte[16];
            BinaryPrimitives.WriteUInt64BigEndian(header, IHaveOpt);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), option);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), (uint)length);
            SendRaw(header);
        }

        public void SendOption(uint option, byte[] data)
        {
            SendOptionHeader(option, data.Length);
            SendRaw(data);
        }

        public (uint Option, uint Type, byte[] Data) ReadOptionReply()
        {
            var header = Receive(20);
            Assert.Equal(OptionReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(header));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
            return (BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)), Receive((int)length));
        }

        /// <summary>The NBD_REP_INFO replies up to the ACK, by information type (without the type).</summary>
        public Dictionary<ushort, byte[]> ReadInfoReplies()
        {
            var infos = new Dictionary<ushort, byte[]>();
            while (true)
            {
                var (_, type, data) = ReadOptionReply();
                if (type == RepAck) return infos;
                Assert.Equal(RepInfo, type);
                infos[BinaryPrimitives.ReadUInt16BigEndian(data)] = data[2..];
            }
        }

        public void Send(ushort command, ulong cookie, ulong offset, uint length, byte[]? payload = null, ushort flags = 0)
        {
            var header = new byte[RequestHeaderLength];
            WriteRequestHeader(header, flags, command, cookie, offset, length);
            SendRaw(header);
            if (payload != null) SendRaw(payload);
        }

        /// <summary>Sends one request and reads its reply (simple or structured); a read's data comes with it.</summary>
        public (uint Error, byte[] Data) Call(ushort command, ulong cookie, ulong offset, uint length, byte[]? payload = null, ushort flags = 0)
        {
            Send(command, cookie, offset, length, payload, flags);
            var magic = Peek4();
            if (magic == StructuredReplyMagic)
            {
                var chunk = ReadChunk();
                Assert.Equal(cookie, chunk.Cookie);
                return chunk.Type == ReplyTypeOffsetData ? (0, chunk.Payload[8..]) : (BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload), []);
            }
            var reply = ReadSimpleReply(expectDataOf: _ => command == CmdRead ? (int)length : 0);
            Assert.Equal(cookie, reply.Cookie);
            return (reply.Error, reply.Data);
        }

        public (uint Error, ulong Cookie, byte[] Data) ReadSimpleReply(Func<ulong, int> expectDataOf)
        {
            var header = Receive(SimpleReplyHeaderLength);
            Assert.Equal(SimpleReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(header));
            uint error = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
            ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
            return (error, cookie, error == 0 ? Receive(expectDataOf(cookie)) : []);
        }

        public (uint Magic, ushort Flags, ushort Type, ulong Cookie, byte[] Payload) ReadChunk()
        {
            var header = Receive(StructuredReplyHeaderLength);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
            return (BinaryPrimitives.ReadUInt32BigEndian(header), BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4)),
                BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6)), BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8)), Receive((int)length));
        }

        public void Disconnect()
        {
            Send(CmdDisconnect, 0, 0, 0);
            Assert.True(ClosedByServer(TimeSpan.FromSeconds(30)), "the server did not close after NBD_CMD_DISC");
        }

        public void SendRaw(ReadOnlySpan<byte> data)
        {
            while (!data.IsEmpty) data = data[_socket.Send(data)..];
        }

        public void ShutdownSend() => _socket.Shutdown(SocketShutdown.Send);

        public byte[] Receive(int length)
        {
            var buffer = new byte[length];
            int received = 0;
            while (received < length)
            {
                int n = _socket.Receive(buffer, received, length - received, SocketFlags.None);
                Assert.True(n > 0, $"the server closed after {received} of {length} bytes");
                received += n;
            }
            return buffer;
        }

        /// <summary>True once the server closed its end (reading what it still sent); false if it kept it open that long.</summary>
        public bool ClosedByServer(TimeSpan timeout)
        {
            var deadline = DateTime.UtcNow + timeout;
            var buffer = new byte[65536];
            while (DateTime.UtcNow < deadline)
            {
                try
                {
                    if (_socket.Receive(buffer) == 0) return true;
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
                {
                    return true;
                }
            }
            return false;
        }

        public void Dispose() => _socket.Dispose();

        private uint Peek4()
        {
            var buffer = new byte[4];
            int got = 0;
            while (got < 4)
            {
                int n = _socket.Receive(buffer, 0, 4, SocketFlags.Peek);
                Assert.True(n > 0, "the server closed instead of replying");
                got = n;
            }
            return BinaryPrimitives.ReadUInt32BigEndian(buffer);
        }
    }
}
