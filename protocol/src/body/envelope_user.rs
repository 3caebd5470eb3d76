//! GRAB and OPEN: the hot path. Both requests are one envelope and one user, and
//! both responses have a fixed body whatever the status, so a client decodes
//! every answer the same way.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::fixed_body;

/// GRAB and OPEN request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct EnvelopeUser {
    /// Envelope id.
    pub envelope: U64,
    /// The user grabbing or opening; not zero.
    pub user: U64,
}
fixed_body!(EnvelopeUser, 16, []);

/// GRAB response body, present with every status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct GrabResponse {
    /// Until when the reservation holds (Unix ms); 0 when the user holds none.
    pub hold_until_ms: U64,
    /// The amount already paid to this user, 0 if not opened yet.
    pub amount_cents: U64,
    /// Shares neither reserved nor paid, after this request.
    pub shares_free: U32,
    /// Zero.
    pub reserved: U32,
}
fixed_body!(GrabResponse, 24, [reserved @ 20]);

/// OPEN response body, present with every status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct OpenResponse {
    /// The amount paid to this user; 0 unless the status is OK.
    pub amount_cents: U64,
    /// 1-based order in which this share was opened; 0 unless OK.
    pub order: U32,
    /// Zero.
    pub reserved: U32,
}
fixed_body!(OpenResponse, 16, [reserved @ 12]);
