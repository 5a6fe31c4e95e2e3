using System.Management.Automation;
using Kcopyd.Engine;
using Kcopyd.Engine.Trust;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>
/// Computes a block-based checksum of a region (nbdcopy --blkhash's construction), which two hosts can compare
/// without moving the data; shaped like Get-FileHash's output.
/// </summary>
[Cmdlet(VerbsCommon.Get, "RegionHash")]
[OutputType(typeof(RegionHashInfo))]
public sealed class GetRegionHashCommand : HostCommand
{
    /// <summary>Block devices, image files, mirror devices (name or object) or NBD URIs.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName")]
    [ValidateNotNullOrEmpty]
    [DeviceArgumentTransformation]
    public DeviceArgument[] Path { get; set; } = null!;

    [Parameter]
    public long Offset { get; set; }

    /// <summary>Bytes to hash; by default the rest of the device after Offset.</summary>
    [Parameter]
    [ValidateRange(1, long.MaxValue)]
    public long Length { get; set; }

    /// <summary>Bytes per hashed block: a power of two; nbdcopy's default, 64 KiB, by default.</summary>
    [Parameter]
    public int BlockSize { get; set; } = RegionHasher.DefaultBlockSizeBytes;

    [Parameter]
    public BlockHashAlgorithm Algorithm { get; set; } = BlockHashAlgorithm.SHA256;

    protected override void ProcessRecord()
    {
        foreach (var path in Path)
        {
            var request = new HashRequest
            {
                Path = path.ToRef(this), Offset = Offset, BlockSize = BlockSize, Algorithm = Algorithm,
                Length = MyInvocation.BoundParameters.ContainsKey(nameof(Length)) ? Length : null,
            };
            // One path that cannot be hashed is an error of its own; the others are still hashed (Get-FileHash).
            try
            {
                WriteObject(CallOrThrow<RegionHashInfo>(ControlMethods.HashRegion, request));
            }
            catch (KcopydException ex)
            {
                WriteError(ErrorRecords.From(ex));
            }
        }
    }
}
