//! # hongbao-client: talking to a hongbao server
//!
//! Two clients over the one codec in `hongbao-protocol` (this crate never
//! frames bytes itself), for two different jobs.
//!
//! ## [`Client`]: blocking, one request at a time
//!
//! For the CLI, scripts and tests. A `std::net::TcpStream` with connect, read
//! and write timeouts; each call sends one request and waits for its answer,
//! checks that the answer carries the request's id and opcode, and returns
//! owned, typed values.
//!
//! ## [`Pipeline`] and [`ShardedClient`]: async, many requests in flight
//!
//! For the load generator, where the point is to keep a server's cores busy.
//! A pipeline encodes many requests into one write buffer, sends them in one
//! write, and hands answers back one by one as they arrive — in any order,
//! matched by request id — borrowed from a fixed receive buffer, so the steady
//! state allocates nothing. It is generic over `futures_lite` async streams
//! and picks no runtime; the `glommio` feature adds glommio connects.
//! A sharded client holds one pipeline per shard and sends each request to
//! the shard that owns its envelope, skipping the server's forwarding hop.
//!
//! ## Refusals are answers; errors are broken conversations
//!
//! A status other than OK (`sold_out`, `expired`, ...) is a normal outcome and
//! comes back as a value beside the typed body ([`Reply`], [`Answer`]). GRAB
//! and OPEN answers carry their body with every status; other opcodes carry a
//! body only when OK. [`ClientError`] is kept for I/O failures and for answers
//! the protocol does not allow — a wrong request id, a malformed frame, a body
//! that does not fit — after which the connection should be dropped — and
//! for well-formed answers that break a money rule of the protocol (an OPEN
//! `ok` paying 0 cents, QUERY totals that do not add up):
//! [`ClientError::ContractBroken`] names the rule.
//!
//! ## Limits
//!
//! Nothing is allocated from a length the server sent until the codec has
//! checked it against `hongbao_protocol::limits`: the receive buffer is fixed
//! at two maximum frames, a QUERY page holds at most `MAX_QUERY_PAGE` claims,
//! a STATS answer's tables at most their `MAX_STATS_*` entries, and a
//! pipeline holds at most its `max_in_flight` (itself at most
//! [`pipeline::MAX_IN_FLIGHT`]) unanswered requests.

pub mod answer;
pub mod blocking;
mod contract;
pub mod error;
mod frame_buf;
#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "glommio")]
pub mod glommio_net;
pub mod pipeline;
pub mod requests;
pub mod sharded;
pub mod stats;
#[cfg(test)]
mod test_support;
pub mod token;

pub use answer::{
    Answer, AnswerBody, Claim, ClaimPage, Created, EnvelopeSummary, Grabbed, HelloInfo, Opened,
};
pub use blocking::{Client, EnvelopeReport, QueryPage, Reply, ServerInfo};
pub use error::ClientError;
pub use hongbao_protocol::body::{EnvelopeKind, EnvelopeState};
pub use hongbao_protocol::{EnvelopeId, Status};
pub use pipeline::Pipeline;
pub use sharded::ShardedClient;
pub use stats::{LatencyHistogram, OpLatency, ShardStats, StatsAnswer, StatusCount};
