using System.Management.Automation;
using Kcopyd.Engine.Trust;
using Kcopyd.Protocol;
using Kcopyd.Session;

namespace Kcopyd.Commands;

/// <summary>
/// Compares a region of two or more block devices, image files, mirrors or NBD exports (qemu-img compare, cmp) and
/// returns the ranges where inputs differ from the first; -Quiet returns only whether the regions are identical.
/// </summary>
[Cmdlet(VerbsData.Compare, "Region")]
[OutputType(typeof(RegionDifferenceInfo), typeof(bool))]
public sealed class CompareRegionCommand : HostCommand
{
    /// <summary>The inputs: block devices, image files, mirror devices (name or object) or NBD URIs; the first is the reference.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromRemainingArguments = true)]
    [ValidateNotNullOrEmpty]
    [DeviceArgumentTransformation]
    public DeviceArgument[] Path { get; set; } = null!;

    /// <summary>One offset for every input, or one per input.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public long[] Offset { get; set; } = [0];

    /// <summary>Bytes to compare; by default as far as every input reaches after its offset.</summary>
    [Parameter]
    [ValidateRange(1, long.MaxValue)]
    public long Length { get; set; }

    /// <summary>Return only $true (identical) or $false, stopping at the first difference (cmp -s).</summary>
    [Parameter]
    public SwitchParameter Quiet { get; set; }

    protected override void ProcessRecord()
    {
        var paths = Path.Select(p => p.ToRef(this)).ToArray();
        long[] offsets = Offset;
        long? length = MyInvocation.BoundParameters.ContainsKey(nameof(Length)) ? Length : null;
        long done = 0, total = 0;
        // The host answers a bounded number of ranges per call; the next call starts where that one stopped.
        while (true)
        {
            var request = new CompareRequest { Paths = paths, Offsets = offsets, Length = length, FirstOnly = Quiet, DoneBefore = done, TotalLength = total };
            var result = Call<CompareResult>(ControlMethods.CompareRegion, request);
            if (Quiet)
            {
                WriteObject(result.Differences.Length == 0);
                return;
            }
            WriteObject(result.Differences, enumerateCollection: true);
            if (result.Complete) return;
            if (total == 0) total = result.Length;
            done += result.ComparedBytes;
            offsets = offsets.Select(o => o + result.ComparedBytes).ToArray();
            length = total - done;
        }
    }
}
