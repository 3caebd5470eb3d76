//! The one error type of the client. A refused request is not here: it is an
//! answer, carried as a [`Status`] beside its body.
//! What is here means the conversation itself failed (I/O) or the server said
//! something the protocol does not allow, after which the connection cannot be
//! trusted and should be dropped.

use std::io;

use hongbao_protocol::{FrameError, Opcode, Status};

/// Why a request could not be carried out. Every variant names its fields.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made to `addr`.
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// Connecting to `addr`, with its HELLOs, took longer than `timeout`: a
    /// port that accepts and never answers.
    #[error("connecting to {addr} and saying HELLO took longer than {timeout:?}")]
    ConnectTimedOut { addr: String, timeout: std::time::Duration },
    /// `addr` resolved to no socket address.
    #[error("{addr} resolves to no address")]
    NoAddress { addr: String },
    /// Reading or writing the socket failed (including timeouts).
    #[error("i/o error: {source}")]
    Io {
        #[from]
        source: io::Error,
    },
    /// The server closed the connection while answers were owed.
    #[error("server closed the connection with {in_flight} request(s) unanswered")]
    Closed { in_flight: usize },
    /// The bytes from the server are not a valid response frame or body.
    #[error("malformed response: {source}")]
    Frame {
        #[from]
        source: FrameError,
    },
    /// The blocking client got an answer to a request it did not send.
    #[error("response carries request id {found}, expected {expected}")]
    RequestIdMismatch { expected: u64, found: u64 },
    /// A pipeline got an answer to no request it has in flight.
    #[error("response carries request id {request_id}, which is not in flight")]
    UnknownRequestId { request_id: u64 },
    /// The answer's opcode is not the request's.
    #[error("response opcode {found:#04x} answers a {expected} request")]
    OpcodeMismatch { expected: Opcode, found: u8 },
    /// A refused answer carries a body its status does not allow: only GRAB
    /// and OPEN refused at command level do.
    #[error("{opcode} response with status {status} carries {len} body bytes")]
    UnexpectedBody { opcode: Opcode, status: Status, len: usize },
    /// A well-formed answer whose values break a rule docs/PROTOCOL.md says
    /// MUST hold (its money rules, its command's table of answers): `rule`
    /// names it. The frame was whole, so the stream is still framed.
    #[error("{opcode} answer with status {status} breaks the protocol: {rule}")]
    ContractBroken { opcode: Opcode, status: Status, rule: &'static str },
    /// An enumerated field holds a value the protocol does not name.
    #[error("{field} has the unknown value {value}")]
    UnknownValue { field: &'static str, value: u8 },
    /// A QUERY page does not start where it was asked to.
    #[error("query page starts at claim {found}, asked for {expected}")]
    PageMismatch { expected: u32, found: u32 },
    /// A QUERY page came back empty before every paid claim was listed.
    #[error("query listed {claims} claims of {paid_count} paid, then an empty page")]
    ClaimsMissing { claims: u32, paid_count: u32 },
    /// A QUERY page contradicts the protocol or the pages before it: its
    /// claims are not the next in opening order, it holds more than are
    /// paid, or the envelope's share count changed between pages.
    #[error("query page {page_start} is inconsistent: {what}")]
    InconsistentPage { page_start: u32, what: String },
    /// Paging through an envelope returned more claims than it has shares.
    #[error("envelope returned {claims} claims but has only {count} shares")]
    TooManyClaims { claims: u64, count: u32 },
    /// A pipeline already has as many requests in flight as it may.
    #[error("{in_flight} requests in flight; the limit is {max}")]
    TooManyInFlight { in_flight: usize, max: usize },
    /// A request whose body is longer than the server accepts (the
    /// `max_body_len` it advertised in HELLO, or the protocol's limit):
    /// refused before it is sent.
    #[error("{opcode} request of {len} body bytes above the server's limit {max}")]
    BodyTooLong { opcode: Opcode, len: usize, max: u32 },
    /// A pipeline asked for with a depth outside `1..=max`.
    #[error("max_in_flight {max_in_flight} is outside 1..={max}")]
    DepthOutOfRange { max_in_flight: usize, max: usize },
    /// A HELLO token longer than the protocol allows.
    #[error("hello token of {len} bytes above the limit {max}")]
    TokenTooLong { len: usize, max: u32 },
    /// A shard-aware port is answered by another shard than HELLO listed it for.
    #[error("port {port} is listed for shard {expected} but shard {found} answers it")]
    ShardMismatch { port: u16, expected: u16, found: u16 },
    /// A shard-aware port's HELLO tells another shard count than the main port's.
    #[error("port {port} answers HELLO with {found} shards, the main port with {main}")]
    HelloDisagrees { port: u16, main: u16, found: u16 },
    /// HELLO, which every sharded session starts with, was refused.
    #[error("hello refused: {status}")]
    HelloRefused { status: Status },
    /// An earlier call left the connection unusable: its byte stream can no
    /// longer be split into answers that are known to be ours (a malformed
    /// frame, an answer to a request never sent, a failed write, too many
    /// calls abandoned unanswered). `cause` is that first failure; nothing
    /// more is read or sent on the connection.
    #[error("the connection is unusable since an earlier call failed: {cause}")]
    Broken { cause: String },
    /// The server said why it is closing the connection, in a response that
    /// answers no request (request id 0): `busy` (over a connection limit),
    /// `timeout` (no HELLO, or a frame left unfinished, for too long), or a
    /// frame error it could not tie to a request.
    #[error("the server is closing the connection: {status}")]
    Ended { status: Status },
}

impl ClientError {
    /// Whether the failed request may have been sent and carried out: the
    /// connection was made, and then no answer came (a hang-up, a timeout,
    /// a read or write that failed, the server ending the connection with
    /// an answer to no request). PROTOCOL.md 3.3: such a request's outcome
    /// is unknown. A GRAB or an OPEN sent again answers with the first
    /// one's outcome; a CREATE sent again may make a second envelope.
    /// Failures to connect, and refusals before anything is sent (a token
    /// too long, a client already broken), are not unknown: nothing was sent.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ClientError::Io { .. } | ClientError::Closed { .. } | ClientError::Ended { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_sent_and_unanswered_is_of_unknown_outcome() {
        let timed_out = ClientError::from(io::Error::from(io::ErrorKind::TimedOut));
        assert!(timed_out.outcome_unknown());
        assert!(ClientError::Closed { in_flight: 1 }.outcome_unknown());
        assert!(ClientError::Ended { status: Status::Timeout }.outcome_unknown());
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(!ClientError::Connect { addr: "a:1".into(), source: refused }.outcome_unknown());
        assert!(!ClientError::Broken { cause: "earlier".into() }.outcome_unknown());
    }
}
