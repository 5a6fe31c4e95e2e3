using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Engine.Copy;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Copies a region from one block device or image file to up to eight destinations, reading it once.</summary>
[Cmdlet(VerbsLifecycle.Start, "RegionCopy", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(CopyJobInfo), typeof(Session.Jobs.KcopydCopyJob))]
public sealed class StartRegionCopyCommand : JobCommand
{
    /// <summary>A block device, an image file, or a mirror device.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNull]
    [DeviceArgumentTransformation]
    [ArgumentCompleter(typeof(DevicePathCompleter))]
    public DeviceArgument Source { get; set; } = null!;

    /// <summary>Block devices, image files or mirror devices (up to eight); from the pipeline, one copy per object.</summary>
    // No count or range is validated here: the host refuses too many destinations (TooManyDestinations) and negative
    // offsets (RegionOutOfRange) with ids of their own, which -ErrorAction handles (a validation error it cannot).
    [Parameter(Mandatory = true, Position = 1, ValueFromPipeline = true)]
    [ValidateNotNullOrEmpty]
    [DeviceArgumentTransformation]
    [ArgumentCompleter(typeof(DevicePathCompleter))]
    public DeviceArgument[] Destination { get; set; } = null!;

    [Parameter]
    public long SourceOffset { get; set; }

    /// <summary>One offset for every destination, or one per destination.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public long[] DestinationOffset { get; set; } = [0];

    /// <summary>Bytes to copy; by default the rest of the source after SourceOffset.</summary>
    [Parameter]
    [ValidateRange(1, long.MaxValue)]
    public long Length { get; set; }

    [Parameter]
    public SwitchParameter IgnoreErrors { get; set; }

    /// <summary>Re-read every destination from the device after writing it and compare it with the source.</summary>
    [Parameter]
    public SwitchParameter Verify { get; set; }

    /// <summary>Zero chunks and holes of the source are zeroed on the destinations (holes punched in image files), not written.</summary>
    [Parameter]
    public SwitchParameter Sparse { get; set; }

    /// <summary>The destinations read as zeros already: zero chunks and holes of the source are not written at all.</summary>
    [Parameter]
    public SwitchParameter DestinationIsZero { get; set; }

    /// <summary>
    /// A copy map: the same copy started again with it copies only what the map does not hold as finished
    /// (BytesFromMap); created 0600 when missing.
    /// </summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? MapPath { get; set; }

    protected override void ProcessRecord()
    {
        var request = new CopyJobRequest
        {
            Client = Client,
            Source = Source.ToRef(this),
            Destinations = Destination.Select(d => d.ToRef(this)).ToArray(),
            SourceOffset = SourceOffset,
            DestinationOffsets = DestinationOffset,
            Length = MyInvocation.BoundParameters.ContainsKey(nameof(Length)) ? Length : null,
            IgnoreErrors = IgnoreErrors,
            Verify = Verify,
            Sparse = Sparse,
            DestinationIsZero = DestinationIsZero,
            MapPath = MapPath == null ? null : SessionState.Path.GetUnresolvedProviderPathFromPSPath(MapPath),
            MaxBytesPerSecond = BytesPerSecond,
            Force = Force,
            Follow = Follows,
            Confirmed = WouldProcessUnasked,
            Verbose = ShowsVerbose,
        };
        // The host checks everything (sizes, alignment, overlap, devices in use) before it asks to go on.
        if (CallOrWriteError<CopyJobInfo?>(ControlMethods.StartCopy, request) is { } job)
            JobProgress.Output(this, job);
    }
}
