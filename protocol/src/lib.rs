//! # hongbao-protocol: the wire format, sans IO
//!
//! This crate is the one codec that the server, the client library and the load
//! generator share. It owns no sockets and reads no clocks, so everything here is
//! deterministic and testable in memory (the quinn-proto way).
//!
//! ## Shape of a frame
//!
//! Every request and every response is one *frame*: a fixed 24-byte [`Header`]
//! followed by `body_len` bytes of body. All integers are little-endian. The header
//! carries a `request_id` that the response echoes, so a client may pipeline many
//! requests on one connection and match answers by id (memcached's `opaque`).
//!
//! The hot requests, GRAB and OPEN, and their responses have fixed-size bodies with
//! no variable part: a valid one has only one possible first 16 header bytes, so
//! [`hot_path`] reads a whole GRAB or OPEN frame with one comparison and writes
//! its answer with one copy, agreeing byte for byte with the general codec. Only HELLO (the optional token, the shard port list), QUERY (a page of
//! claims) and the STATS answer (request counts and latency histograms) carry a
//! variable part, and each is bounded by a limit in [`limits`].
//!
//! ## Rules the decoder enforces
//!
//! * Decoding never panics and never allocates. A length the peer sent is checked
//!   against [`limits::MAX_BODY_LEN`] before anything else looks at it.
//! * Reserved bytes must be zero, in the header and in every body, so that they
//!   can be given meaning later without ambiguity.
//! * The size of every wire struct is asserted at compile time.
//!
//! `docs/PROTOCOL.md` is the specification; its hex examples are replayed byte for
//! byte by this crate's golden tests.

pub mod body;
pub mod codec;
pub mod envelope_id;
pub mod error;
pub mod header;
pub mod hot_path;
pub mod hot_path_client;
pub mod limits;
pub mod opcode;
pub mod request;
pub mod response;
pub mod status;

pub use codec::{decode_frame, Frame};
pub use envelope_id::EnvelopeId;
pub use error::FrameError;
pub use header::{Header, HEADER_LEN, MAGIC, VERSION};
pub use opcode::Opcode;
pub use request::Request;
pub use status::Status;
