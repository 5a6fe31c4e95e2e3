using Kcopyd.Host;

// The host runs until SIGTERM or SIGINT; its one line on stdout tells whoever started it that it listens.
try
{
    await using var server = ControlServer.Start(RuntimeDirectory.Resolve(), Console.Error);
    using var stopping = new CancellationTokenSource();
    using var onTerm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
        System.Runtime.InteropServices.PosixSignal.SIGTERM, context => { context.Cancel = true; stopping.Cancel(); });
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stopping.Cancel(); };
    Console.Out.WriteLine($"Listening on {server.SocketPath}");
    Console.Out.Flush();
    try { await Task.Delay(Timeout.Infinite, stopping.Token); }
    catch (OperationCanceledException) { }
    return 0;
}
catch (HostStartException e)
{
    Console.Error.WriteLine($"kcopyd-host: {e.Message}");
    return 1;
}
