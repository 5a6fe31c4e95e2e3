using System.Management.Automation;
using Kcopyd.Engine.Copy;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>Zeroes a region of a block device or image file, through the device's zero-range fast path where it has one.</summary>
[Cmdlet(VerbsCommon.Clear, "Region", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(CopyJob))]
public sealed class ClearRegionCommand : JobCommand
{
    /// <summary>A block device, an image file, or a mirror device.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNull]
    [DeviceArgumentTransformation]
    public DeviceArgument Path { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1)]
    [ValidateRange(0, long.MaxValue)]
    public long Offset { get; set; }

    [Parameter(Mandatory = true, Position = 2)]
    [ValidateRange(1, long.MaxValue)]
    public long Length { get; set; }

    protected override void EndProcessing()
    {
        var job = JobLauncher.Start(this, Client, (client, devices) =>
        {
            CopyDestination[] destination = [new(devices.OpenForWrite(Path, Force), Offset)];
            // Zero validates again, but only after the prompt: bad input must fail first, and under -WhatIf too.
            new CopyRequest { Destinations = destination, LengthBytes = Length }.Validate();
            return ShouldProcess($"{destination[0].Device.Name} at {Offset}", $"Zero {Length} bytes")
                ? client.Zero(destination, Length, _ => devices.CloseAll())
                : null;
        });
        if (job != null) JobLauncher.Output(this, job, Wait, $"Zeroing {Path}");
    }
}
