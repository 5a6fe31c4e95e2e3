using Kcopyd.Engine.Nbd;

namespace Kcopyd.Engine.Tests;

/// <summary>NBD URIs as doc/uri.md spells them: what each part means, and one normal spelling per export.</summary>
public sealed class NbdClientUriTests
{
    [Theory]
    [InlineData("nbd://example.com/disk", "example.com", 10809, "disk")]
    [InlineData("nbd://example.com", "example.com", 10809, "")]
    [InlineData("nbd://example.com/", "example.com", 10809, "")]
    [InlineData("nbd://example.com//disk", "example.com", 10809, "/disk")]
    [InlineData("nbd://example.com/hello%20world", "example.com", 10809, "hello world")]
    [InlineData("nbd://127.0.0.1:2000/a/b", "127.0.0.1", 2000, "a/b")]
    [InlineData("nbd://[::1]:2001/x", "::1", 2001, "x")]
    [InlineData("NBD://Example.COM/Disk", "Example.COM", 10809, "Disk")]
    public void A_TCP_URI_gives_host_port_and_export_name(string text, string host, int port, string export)
    {
        Assert.True(NbdUri.TryParse(text, out var uri));
        Assert.Equal(NbdTransport.Tcp, uri.Transport);
        Assert.Equal(host, uri.Host);
        Assert.Equal(port, uri.Port);
        Assert.Equal(export, uri.ExportName);
        Assert.Null(uri.SocketPath);
    }

    [Fact]
    public void A_Unix_URI_gives_the_socket_made_absolute_and_the_export_name()
    {
        var uri = NbdUri.Parse("nbd+unix:///disk%2F1?socket=/run/nbd/./s.sock");
        Assert.Equal(NbdTransport.Unix, uri.Transport);
        Assert.Equal("/run/nbd/s.sock", uri.SocketPath);
        Assert.Equal("disk/1", uri.ExportName);
        Assert.Null(uri.Host);

        var relative = NbdUri.Parse("nbd+unix:///?socket=s.sock");
        Assert.Equal(Path.GetFullPath("s.sock"), relative.SocketPath);
        Assert.Equal("", relative.ExportName);

        Assert.Equal("\0abstract", NbdUri.Parse("nbd+unix:///?socket=%00abstract").SocketPath);
    }

    [Theory]
    [InlineData("nbd://Example.COM/disk", "nbd://example.com:10809/disk")]
    [InlineData("nbd://example.com:10809/disk", "nbd://example.com:10809/disk")]
    [InlineData("nbd://[::1]/hello%20world", "nbd://[::1]:10809/hello%20world")]
    [InlineData("nbd+unix:///a?socket=/tmp/x/../s", "nbd+unix:///a?socket=/tmp/s")]
    [InlineData("nbd+unix:///%61?socket=%2Ftmp%2Fs", "nbd+unix:///a?socket=/tmp/s")]
    public void Each_export_has_one_normal_spelling(string text, string normal)
        => Assert.Equal(normal, NbdUri.Parse(text).ToString());

    [Fact]
    public void An_nbds_URI_carries_libnbds_TLS_parameters_and_the_same_export_address_as_plain_nbd()
    {
        var tcp = NbdUri.Parse("nbds://alice@Example.COM:2000/disk?tls-certificates=/etc/pki/x/./y&tls-verify-peer=false&tls-hostname=nbd.example&tls-username=alice");
        Assert.Equal(NbdTransport.Tcp, tcp.Transport);
        Assert.Equal("Example.COM", tcp.Host);
        Assert.Equal(new NbdUriTls("/etc/pki/x/y", VerifyPeer: false, HostName: "nbd.example"), tcp.Tls);
        Assert.Equal("nbds://example.com:2000/disk?tls-certificates=/etc/pki/x/y&tls-verify-peer=false&tls-hostname=nbd.example", tcp.ToString());
        Assert.Equal(NbdUri.Parse("nbd://example.com:2000/disk").ExportAddress, tcp.ExportAddress);

        var unix = NbdUri.Parse("nbds+unix://alice@/disk?socket=/run/s.sock&tls-certificates=certs");
        Assert.Equal(NbdTransport.Unix, unix.Transport);
        Assert.Equal(new NbdUriTls(Path.GetFullPath("certs"), VerifyPeer: true, HostName: null), unix.Tls);
        Assert.Equal($"nbds+unix:///disk?socket=/run/s.sock&tls-certificates={Path.GetFullPath("certs")}", unix.ToString());
        Assert.Equal("nbd+unix:///disk?socket=/run/s.sock", unix.ExportAddress);
        Assert.Equal(unix.ToString(), NbdUri.Parse(unix.ToString()).ToString());

        Assert.Null(NbdUri.Parse("nbd://example.com/disk").Tls);
        Assert.Equal(new NbdUriTls(null, true, null), NbdUri.Parse("nbds://example.com/").Tls);
    }

    [Theory]
    [InlineData("/dev/sdb")]
    [InlineData("disk.img")]
    [InlineData("./nbd://x")]
    [InlineData("C:/images/disk.img")]
    [InlineData("")]
    public void A_path_is_not_an_NBD_URI(string text)
    {
        Assert.False(NbdUri.IsNbdUri(text));
        Assert.False(NbdUri.TryParse(text, out _));
    }
}
