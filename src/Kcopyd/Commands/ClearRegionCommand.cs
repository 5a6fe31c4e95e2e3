using System.Management.Automation;
using Kcopyd.Completion;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Zeroes a region of a block device or image file, through the device's zero-range fast path where it has one.</summary>
[Cmdlet(VerbsCommon.Clear, "Region", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(CopyJobInfo), typeof(Session.Jobs.KcopydCopyJob))]
public sealed class ClearRegionCommand : JobCommand
{
    /// <summary>A block device, an image file, or a mirror device; from the pipeline, one job per object.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNull]
    [DeviceArgumentTransformation]
    [ArgumentCompleter(typeof(DevicePathCompleter))]
    public DeviceArgument Path { get; set; } = null!;

    /// <summary>A negative offset is refused by the host (RegionOutOfRange), as Start-RegionCopy's are.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    public long Offset { get; set; }

    [Parameter(Mandatory = true, Position = 2)]
    [ValidateRange(1, long.MaxValue)]
    public long Length { get; set; }

    protected override void ProcessRecord()
    {
        var request = new ZeroJobRequest { Client = Client, Path = Path.ToRef(this), Offset = Offset, Length = Length, Force = Force, MaxBytesPerSecond = BytesPerSecond, Follow = Follows, Confirmed = WouldProcessUnasked, Verbose = ShowsVerbose };
        if (CallOrWriteError<CopyJobInfo?>(ControlMethods.StartZero, request) is { } job)
            JobProgress.Output(this, job);
    }
}
