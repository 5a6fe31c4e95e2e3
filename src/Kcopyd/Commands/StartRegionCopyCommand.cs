using System.Management.Automation;
using Kcopyd.Engine.Copy;
using Kcopyd.Engine.Devices;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Copies a region from one block device or image file to up to eight destinations, reading it once.</summary>
[Cmdlet(VerbsLifecycle.Start, "RegionCopy", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(CopyJob))]
public sealed class StartRegionCopyCommand : JobCommand
{
    /// <summary>A block device, an image file, or a mirror device.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNull]
    [DeviceArgumentTransformation]
    public DeviceArgument Source { get; set; } = null!;

    /// <summary>Block devices, image files or mirror devices.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    [ValidateCount(1, CopyRequest.MaxDestinations)]
    [DeviceArgumentTransformation]
    public DeviceArgument[] Destination { get; set; } = null!;

    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long SourceOffset { get; set; }

    /// <summary>One offset for every destination, or one per destination.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [ValidateCount(1, CopyRequest.MaxDestinations)]
    public long[] DestinationOffset { get; set; } = [0];

    /// <summary>Bytes to copy; by default the rest of the source after SourceOffset.</summary>
    [Parameter]
    [ValidateRange(1, long.MaxValue)]
    public long Length { get; set; }

    [Parameter]
    public SwitchParameter IgnoreErrors { get; set; }

    protected override void EndProcessing()
    {
        if (DestinationOffset.Length != 1 && DestinationOffset.Length != Destination.Length)
        {
            ThrowTerminatingError(ErrorRecords.Create("DestinationOffsetCount", ErrorCategory.InvalidArgument, DestinationOffset,
                $"Give one DestinationOffset for all destinations or one for each of the {Destination.Length} destinations."));
        }
        if (DestinationOffset.Any(o => o < 0))
        {
            ThrowTerminatingError(ErrorRecords.Create("RegionOutOfRange", ErrorCategory.InvalidArgument, DestinationOffset,
                "DestinationOffset cannot be negative."));
        }

        var job = JobLauncher.Start(this, Client, (client, devices) =>
        {
            var source = devices.Open(Source, DeviceOpenOptions.ReadOnly);
            var destinations = Destination
                .Select((path, i) => new CopyDestination(devices.OpenForWrite(path, Force), DestinationOffset.Length == 1 ? DestinationOffset[0] : DestinationOffset[i]))
                .ToArray();
            var request = new CopyRequest
            {
                Source = source,
                SourceOffsetBytes = SourceOffset,
                Destinations = destinations,
                LengthBytes = MyInvocation.BoundParameters.ContainsKey(nameof(Length)) ? Length : source.SizeBytes - SourceOffset,
                IgnoreErrors = IgnoreErrors,
                Completed = _ => devices.CloseAll(),
            };
            request.Validate();

            string target = string.Join(", ", destinations.Select(d => $"{d.Device.Name} at {d.OffsetBytes}"));
            return ShouldProcess(target, $"Copy {request.LengthBytes} bytes from {source.Name} at {SourceOffset}")
                ? client.Copy(request)
                : null;
        });
        if (job != null) JobLauncher.Output(this, job, Wait, $"Copying {job.Source}");
    }
}
