namespace Kcopyd.Engine.Mirror;

/// <summary>The state of one region of a mirror (dm-region-hash's DM_RH_*).</summary>
public enum RegionState
{
    /// <summary>In sync, no write in flight; the log says clean.</summary>
    Clean,
    /// <summary>In sync with writes in flight; the log was marked (and flushed) before they were issued.</summary>
    Dirty,
    /// <summary>Out of sync: only the default leg holds the data, so writes go there alone.</summary>
    NoSync,
    /// <summary>Being copied from the default leg to the others; writes are held until the copy ends.</summary>
    Recovering,
}
