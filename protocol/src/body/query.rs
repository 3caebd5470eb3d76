//! QUERY: an envelope's totals, its best-luck user and a page of its claims.
//!
//! Response: `QueryResponse` (104 bytes) then `page_len` `ClaimEntry`s (24 bytes
//! each) in opening order, starting at claim index `page_start`.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::fixed_body;

/// Life-cycle state of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EnvelopeState {
    /// Shares can still be grabbed or opened.
    Active = 0,
    /// Every share is paid.
    Finished = 1,
    /// Expired; the unpaid remainder was refunded to the sender.
    Expired = 2,
}

impl EnvelopeState {
    /// The state for a wire byte.
    pub const fn from_u8(value: u8) -> Option<EnvelopeState> {
        match value {
            0 => Some(EnvelopeState::Active),
            1 => Some(EnvelopeState::Finished),
            2 => Some(EnvelopeState::Expired),
            _ => None,
        }
    }

    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            EnvelopeState::Active => "active",
            EnvelopeState::Finished => "finished",
            EnvelopeState::Expired => "expired",
        }
    }
}

/// QUERY request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct QueryRequest {
    /// Envelope id.
    pub envelope: U64,
    /// Index of the first claim wanted (0-based, in opening order).
    pub page_start: U32,
    /// Most claims wanted; 0 asks for totals only. The server caps it at
    /// [`crate::limits::MAX_QUERY_PAGE`].
    pub page_limit: U32,
}
fixed_body!(QueryRequest, 16, []);

/// QUERY response fixed part (status OK only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct QueryResponse {
    /// Envelope id.
    pub envelope: U64,
    /// The sender.
    pub sender: U64,
    /// Total put in, cents.
    pub total_cents: U64,
    /// Sum of paid shares, cents.
    pub paid_cents: U64,
    /// Neither paid nor refunded, cents.
    pub remaining_cents: U64,
    /// Returned to the sender at expiry, cents.
    pub refunded_cents: U64,
    /// Creation time, Unix ms.
    pub created_at_ms: U64,
    /// Expiry time, Unix ms.
    pub expires_at_ms: U64,
    /// The user with the largest share (ties: the earlier opener); 0 if none.
    pub best_user: U64,
    /// That user's amount, cents.
    pub best_amount_cents: U64,
    /// Number of shares.
    pub count: U32,
    /// Shares paid; also the number of claims.
    pub paid_count: U32,
    /// Reservations currently held.
    pub reserved_count: U32,
    /// Index of the first claim in this page.
    pub page_start: U32,
    /// Claims in this page.
    pub page_len: U32,
    /// An [`EnvelopeState`] byte.
    pub state: u8,
    /// An [`super::EnvelopeKind`] byte.
    pub kind: u8,
    /// Zero.
    pub reserved: [u8; 2],
}
fixed_body!(QueryResponse, 104, [reserved @ 102]);

/// One paid share in a QUERY page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ClaimEntry {
    /// Who opened it.
    pub user: U64,
    /// How much, cents.
    pub amount_cents: U64,
    /// 1-based opening order.
    pub order: U32,
    /// Zero.
    pub reserved: U32,
}
fixed_body!(ClaimEntry, 24, [reserved @ 20]);
