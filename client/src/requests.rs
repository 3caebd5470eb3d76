//! Request values built from plain integers, so that callers (the CLI, the load
//! generator) need not spell out the wire structs' little-endian field types.
//! Encoding itself is the protocol crate's [`Request::encode`].

use hongbao_protocol::body::{CreateRequest, EnvelopeKind, EnvelopeUser, QueryRequest};
use hongbao_protocol::limits::MAX_TOKEN_LEN;
use hongbao_protocol::{EnvelopeId, Request};
use zerocopy::little_endian::{U32, U64};

use crate::error::ClientError;

/// CREATE: `sender` puts `total_cents` into `count` shares split as `kind`;
/// `expires_in_secs` of 0 asks for the server's default.
pub fn create(
    sender: u64,
    total_cents: u64,
    count: u32,
    kind: EnvelopeKind,
    expires_in_secs: u32,
) -> Request<'static> {
    Request::Create(CreateRequest {
        sender: U64::new(sender),
        total_cents: U64::new(total_cents),
        count: U32::new(count),
        kind: kind as u8,
        reserved0: [0; 3],
        expires_in_secs: U32::new(expires_in_secs),
        reserved1: U32::new(0),
    })
}

/// GRAB: reserve one share of `envelope` for `user`.
pub fn grab(envelope: EnvelopeId, user: u64) -> Request<'static> {
    Request::Grab(envelope_user(envelope, user))
}

/// OPEN: turn `user`'s reservation of `envelope` into a paid amount.
pub fn open(envelope: EnvelopeId, user: u64) -> Request<'static> {
    Request::Open(envelope_user(envelope, user))
}

/// QUERY: totals of `envelope` and at most `page_limit` claims from index
/// `page_start` (the server caps the page at its own maximum).
pub fn query(envelope: EnvelopeId, page_start: u32, page_limit: u32) -> Request<'static> {
    Request::Query(QueryRequest {
        envelope: U64::new(envelope.0),
        page_start: U32::new(page_start),
        page_limit: U32::new(page_limit),
    })
}

fn envelope_user(envelope: EnvelopeId, user: u64) -> EnvelopeUser {
    EnvelopeUser { envelope: U64::new(envelope.0), user: U64::new(user) }
}

/// HELLO offering this crate's protocol version, with `token` (empty when the
/// server asks for none). A token above the protocol's limit is refused here
/// rather than sent to be refused by the server.
pub fn hello(token: &[u8]) -> Result<Request<'_>, ClientError> {
    if token.len() > MAX_TOKEN_LEN as usize {
        return Err(ClientError::TokenTooLong { len: token.len(), max: MAX_TOKEN_LEN });
    }
    Ok(Request::hello(token))
}
