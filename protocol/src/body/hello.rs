//! HELLO: the version check, and the shard map a routing client needs.
//!
//! Request: `HelloRequest` (8 bytes) then `token_len` bytes of token.
//! Response: `HelloResponse` (16 bytes) then `shard_count` little-endian u16
//! ports, the shard-aware port of each shard in shard order.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::fixed_body;

/// HELLO request fixed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HelloRequest {
    /// Lowest protocol version the client speaks.
    pub version_min: u8,
    /// Highest protocol version the client speaks.
    pub version_max: u8,
    /// Zero.
    pub reserved: U16,
    /// Bytes of authentication token after this struct; at most
    /// [`crate::limits::MAX_TOKEN_LEN`].
    pub token_len: U32,
}
fixed_body!(HelloRequest, 8, [reserved @ 2]);

/// HELLO response fixed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HelloResponse {
    /// The version the server will speak on this connection.
    pub version: u8,
    /// Zero.
    pub reserved0: u8,
    /// Shards the server runs; this many ports follow.
    pub shard_count: U16,
    /// The shard that answered this HELLO.
    pub shard_id: U16,
    /// Zero.
    pub reserved1: U16,
    /// Largest body the server accepts.
    pub max_body_len: U32,
    /// Most claims one QUERY page returns.
    pub max_query_page: U32,
}
fixed_body!(HelloResponse, 16, [reserved0 @ 1, reserved1 @ 6]);
