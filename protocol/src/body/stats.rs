//! STATS: counters of the shard that answers. A client wanting the whole server
//! asks every shard-aware port (the CLI does) and adds them up.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::fixed_body;

/// STATS response body (status OK only). The request body is empty.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StatsResponse {
    /// The shard that answered.
    pub shard_id: U16,
    /// Shards the server runs.
    pub shard_count: U16,
    /// Zero.
    pub reserved: U32,
    /// Milliseconds since the shard started.
    pub uptime_ms: U64,
    /// Connections open on this shard now.
    pub connections: U64,
    /// Envelopes held (live and retained for QUERY).
    pub envelopes: U64,
    /// Most envelopes this shard may hold.
    pub envelopes_max: U64,
    /// Share slots held: the counts of the envelopes held, added up.
    pub claims: U64,
    /// Most share slots this shard may hold.
    pub claims_max: U64,
    /// Requests answered by this shard's engine.
    pub requests: U64,
    /// Requests this shard sent to their owning shard.
    pub forwarded_out: U64,
    /// Requests other shards sent to this one.
    pub forwarded_in: U64,
    /// Envelopes created.
    pub creates: U64,
    /// Shares paid.
    pub opens: U64,
    /// Envelopes expired with a refund recorded.
    pub expired: U64,
    /// Bytes read from clients.
    pub bytes_in: U64,
    /// Bytes written to clients.
    pub bytes_out: U64,
}
fixed_body!(StatsResponse, 120, [reserved @ 4]);
