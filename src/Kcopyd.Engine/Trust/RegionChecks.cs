namespace Kcopyd.Engine.Trust;

/// <summary>The checks a read-only region must pass on every input, with the ErrorIds the copy uses.</summary>
public static class RegionChecks
{
    /// <summary>The largest logical block size of the inputs: every offset and the length must be a multiple of it.</summary>
    public static int BlockSizeOf(IReadOnlyList<RegionInput> inputs) => inputs.Max(i => i.Device.LogicalBlockSize);

    public static void Check(IReadOnlyList<RegionInput> inputs, long lengthBytes)
    {
        if (lengthBytes <= 0)
            throw new KcopydException("EmptyRegion", KcopydErrorKind.InvalidArgument, $"The length must be positive, not {lengthBytes}.", lengthBytes);
        int blockSize = BlockSizeOf(inputs);
        foreach (var input in inputs)
        {
            var device = input.Device;
            if (input.OffsetBytes < 0 || input.OffsetBytes % blockSize != 0 || lengthBytes % blockSize != 0)
                throw new KcopydException("UnalignedRegion", KcopydErrorKind.InvalidArgument,
                    $"Offset {input.OffsetBytes} and length {lengthBytes} on '{device.Name}' must be multiples of the logical block size {blockSize}.", device.Name);
            if (input.OffsetBytes > device.SizeBytes - lengthBytes)
                throw new KcopydException("RegionOutOfRange", KcopydErrorKind.InvalidArgument,
                    $"The region {input.OffsetBytes}+{lengthBytes} ends past the end of '{device.Name}' ({device.SizeBytes} bytes).", device.Name);
        }
    }
}
