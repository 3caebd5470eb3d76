//! CREATE: a sender puts `total_cents` into an envelope of `count` shares.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::fixed_body;

/// How the total is split into shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EnvelopeKind {
    /// Double-average random split ("lucky money").
    Random = 0,
    /// Equal shares; the total must divide evenly by the count.
    Fixed = 1,
}

impl EnvelopeKind {
    /// The kind for a wire byte.
    pub const fn from_u8(value: u8) -> Option<EnvelopeKind> {
        match value {
            0 => Some(EnvelopeKind::Random),
            1 => Some(EnvelopeKind::Fixed),
            _ => None,
        }
    }

    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            EnvelopeKind::Random => "random",
            EnvelopeKind::Fixed => "fixed",
        }
    }
}

/// CREATE request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CreateRequest {
    /// The sending user; not zero.
    pub sender: U64,
    /// Money in the envelope, integer cents.
    pub total_cents: U64,
    /// Number of shares.
    pub count: U32,
    /// An [`EnvelopeKind`] byte.
    pub kind: u8,
    /// Zero.
    pub reserved0: [u8; 3],
    /// Seconds until expiry; 0 asks for the server's default.
    pub expires_in_secs: U32,
    /// Zero.
    pub reserved1: U32,
}
fixed_body!(CreateRequest, 32, [reserved0 @ 21, reserved1 @ 28]);

/// CREATE response body (status OK only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CreateResponse {
    /// The new envelope's id; names its owning shard.
    pub envelope: U64,
    /// When it expires, Unix milliseconds by the server's clock.
    pub expires_at_ms: U64,
}
fixed_body!(CreateResponse, 16, []);
