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
