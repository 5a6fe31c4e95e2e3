using System.Buffers.Binary;

namespace Kcopyd.Engine.Nbd;

/// <summary>
/// The NBD protocol's numbers (github.com/NetworkBlockDevice/nbd, doc/proto.md): the fixed newstyle handshake, its
/// options and replies, and the transmission phase's requests and replies. All integers are big-endian on the wire.
/// Shared by the engine's server (an export of any IBlockDevice) and its client (an NBD URI as an IBlockDevice).
/// </summary>
public static class NbdProtocol
{
    // Handshake: the server sends NbdMagic, IHaveOpt, then its 16-bit handshake flags; the client its 32-bit flags.
    public const ulong NbdMagic = 0x4e42444d41474943;       // "NBDMAGIC"
    public const ulong IHaveOpt = 0x49484156454F5054;       // "IHAVEOPT": also the magic of every client option
    public const ulong OptionReplyMagic = 0x0003e889045565a9;

    public const ushort FlagFixedNewstyle = 1 << 0;
    public const ushort FlagNoZeroes = 1 << 1;
    public const uint ClientFlagFixedNewstyle = 1 << 0;
    public const uint ClientFlagNoZeroes = 1 << 1;

    /// <summary>Longest option data a server reads (nbdkit's limit is the same order): more ends the connection.</summary>
    public const int MaxOptionLength = 4096;
    /// <summary>Longest export name (the protocol's own limit).</summary>
    public const int MaxNameLength = 4096;

    // Options (client -> server): magic IHaveOpt (8), option (4), length (4), data.
    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptList = 3;
    public const uint OptStartTls = 5;
    public const uint OptInfo = 6;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;
    public const uint OptListMetaContext = 9;
    public const uint OptSetMetaContext = 10;
    public const uint OptExtendedHeaders = 11;

    // Option replies (server -> client): magic OptionReplyMagic (8), option (4), reply type (4), length (4), data.
    public const uint RepAck = 1;
    public const uint RepServer = 2;
    public const uint RepInfo = 3;
    public const uint RepMetaContext = 4;
    public const uint RepFlagError = 1u << 31;
    public const uint RepErrUnsup = RepFlagError | 1;
    public const uint RepErrPolicy = RepFlagError | 2;
    public const uint RepErrInvalid = RepFlagError | 3;
    public const uint RepErrPlatform = RepFlagError | 4;
    public const uint RepErrTlsReqd = RepFlagError | 5;
    public const uint RepErrUnknown = RepFlagError | 6;
    public const uint RepErrShutdown = RepFlagError | 7;
    public const uint RepErrBlockSizeReqd = RepFlagError | 8;
    public const uint RepErrTooBig = RepFlagError | 9;

    // Information items of NBD_OPT_INFO and NBD_OPT_GO (a 16-bit type first).
    public const ushort InfoExport = 0;      // size (8), transmission flags (2)
    public const ushort InfoName = 1;
    public const ushort InfoDescription = 2;
    public const ushort InfoBlockSize = 3;   // minimum (4), preferred (4), maximum (4)

    // Transmission flags (16 bits), sent with the export's size.
    public const ushort FlagHasFlags = 1 << 0;
    public const ushort FlagReadOnly = 1 << 1;
    public const ushort FlagSendFlush = 1 << 2;
    public const ushort FlagSendFua = 1 << 3;
    public const ushort FlagRotational = 1 << 4;
    public const ushort FlagSendTrim = 1 << 5;
    public const ushort FlagSendWriteZeroes = 1 << 6;
    public const ushort FlagSendDf = 1 << 7;
    public const ushort FlagCanMultiConn = 1 << 8;
    public const ushort FlagSendResize = 1 << 9;
    public const ushort FlagSendCache = 1 << 10;
    public const ushort FlagSendFastZero = 1 << 11;

    // Transmission: a request is magic (4), command flags (2), type (2), cookie (8), offset (8), length (4).
    public const uint RequestMagic = 0x25609513;
    public const int RequestHeaderLength = 28;
    public const uint SimpleReplyMagic = 0x67446698;       // magic (4), error (4), cookie (8)
    public const int SimpleReplyHeaderLength = 16;
    public const uint StructuredReplyMagic = 0x668e33ef;   // magic (4), flags (2), type (2), cookie (8), length (4)
    public const int StructuredReplyHeaderLength = 20;

    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisconnect = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdTrim = 4;
    public const ushort CmdCache = 5;
    public const ushort CmdWriteZeroes = 6;
    public const ushort CmdBlockStatus = 7;

    public const ushort CmdFlagFua = 1 << 0;
    public const ushort CmdFlagNoHole = 1 << 1;
    public const ushort CmdFlagDf = 1 << 2;
    public const ushort CmdFlagReqOne = 1 << 3;
    public const ushort CmdFlagFastZero = 1 << 4;

    public const ushort ReplyFlagDone = 1 << 0;
    public const ushort ReplyTypeNone = 0;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeOffsetHole = 2;
    public const ushort ReplyTypeBlockStatus = 5;
    public const ushort ReplyTypeError = (1 << 15) | 1;
    public const ushort ReplyTypeErrorOffset = (1 << 15) | 2;

    // Errors on the wire are these values, whatever the host's errno numbering (Linux's happen to be the same).
    public const uint ErrPerm = 1;
    public const uint ErrIo = 5;
    public const uint ErrNoMem = 12;
    public const uint ErrInval = 22;
    public const uint ErrNoSpc = 28;
    public const uint ErrOverflow = 75;
    public const uint ErrNotSup = 95;
    public const uint ErrShutdown = 108;

    /// <summary>An errno of the engine's as an NBD error (anything the protocol does not name is EIO).</summary>
    public static uint ToWireError(int errno) => errno switch
    {
        0 => 0,
        1 or 12 or 22 or 28 or 75 or 95 or 108 => (uint)errno,
        _ => ErrIo,
    };

    /// <summary>An NBD error as an errno of the engine's (an unknown one is EIO).</summary>
    public static int FromWireError(uint error) => error switch
    {
        0 => 0,
        ErrPerm or ErrIo or ErrNoMem or ErrInval or ErrNoSpc or ErrOverflow or ErrNotSup or ErrShutdown => (int)error,
        _ => (int)ErrIo,
    };

    public static void WriteRequestHeader(Span<byte> header, ushort flags, ushort type, ulong cookie, ulong offset, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(header, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(header[4..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(header[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(header[8..], cookie);
        BinaryPrimitives.WriteUInt64BigEndian(header[16..], offset);
        BinaryPrimitives.WriteUInt32BigEndian(header[24..], length);
    }

    public static void WriteSimpleReplyHeader(Span<byte> header, uint error, ulong cookie)
    {
        BinaryPrimitives.WriteUInt32BigEndian(header, SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(header[4..], error);
        BinaryPrimitives.WriteUInt64BigEndian(header[8..], cookie);
    }
}
