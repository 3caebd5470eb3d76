//! Bodies of every opcode, one file per group, each a fixed-size zerocopy struct
//! (and, for HELLO, QUERY and STATS, the variable part after it).
//!
//! A fixed body is read with [`FixedBody::decode`]: its length must be exactly
//! [`FixedBody::SIZE`] (or, for a body with a variable tail, at least that), and
//! its reserved bytes must be zero.

mod create;
mod envelope_user;
mod hello;
mod query;
mod stats;

pub use create::{CreateRequest, CreateResponse, EnvelopeKind};
pub use envelope_user::{EnvelopeUser, GrabResponse, OpenResponse};
pub use hello::{HelloRequest, HelloResponse};
pub use query::{ClaimEntry, EnvelopeState, QueryRequest, QueryResponse};
pub use stats::{
    Histogram, HistogramHeader, HistogramKind, RequestCount, StatsResponse, StatsTables, OPCODE_OTHER,
};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::FrameError;

/// A body with a fixed wire layout.
pub trait FixedBody: FromBytes + IntoBytes + KnownLayout + Immutable + Copy {
    /// Bytes on the wire.
    const SIZE: usize;

    /// Offset of the first reserved byte that is not zero, if any.
    fn reserved_not_zero(&self) -> Option<usize>;

    /// Reads a body that is exactly `SIZE` bytes.
    fn decode(opcode: u8, body: &[u8]) -> Result<Self, FrameError> {
        if body.len() != Self::SIZE {
            return Err(FrameError::BadBodyLength { opcode, expected: Self::SIZE, len: body.len() });
        }
        Self::decode_prefix(opcode, body).map(|(value, _)| value)
    }

    /// Reads the fixed part of a body with a variable tail; returns the tail.
    fn decode_prefix(opcode: u8, body: &[u8]) -> Result<(Self, &[u8]), FrameError> {
        let Ok((value, tail)) = Self::read_from_prefix(body) else {
            return Err(FrameError::BadBodyLength { opcode, expected: Self::SIZE, len: body.len() });
        };
        if let Some(offset) = value.reserved_not_zero() {
            return Err(FrameError::ReservedNotZero { offset: crate::header::HEADER_LEN + offset });
        }
        Ok((value, tail))
    }
}

/// Implements [`FixedBody`] and asserts the size at compile time. Reserved
/// fields are listed with their byte offsets within the body.
macro_rules! fixed_body {
    ($ty:ty, $size:expr, [$($field:ident @ $offset:expr),* $(,)?]) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);
        impl $crate::body::FixedBody for $ty {
            const SIZE: usize = $size;
            fn reserved_not_zero(&self) -> Option<usize> {
                $(
                    let bytes = zerocopy::IntoBytes::as_bytes(&self.$field);
                    if let Some(i) = bytes.iter().position(|b| *b != 0) {
                        return Some($offset + i);
                    }
                )*
                None
            }
        }
    };
}
pub(crate) use fixed_body;
