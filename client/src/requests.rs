//! Request values built from plain integers, so that callers (the CLI, the load
//! generator) need not spell out the wire structs' little-endian field types.
//! Encoding itself is the protocol crate's [`Request::encode`].

use std::mem::size_of;

use hongbao_protocol::body::{CreateRequest, EnvelopeKind, EnvelopeUser, HelloRequest, QueryRequest};
use hongbao_protocol::limits::{MAX_BODY_LEN, MAX_TOKEN_LEN};
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

/// Bytes of body `request` encodes to, computed without encoding it.
pub fn body_len(request: &Request<'_>) -> usize {
    match request {
        Request::Hello { token, .. } => size_of::<HelloRequest>() + token.len(),
        Request::Ping | Request::Stats => 0,
        Request::Create(_) => size_of::<CreateRequest>(),
        Request::Grab(_) | Request::Open(_) => size_of::<EnvelopeUser>(),
        Request::Query(_) => size_of::<QueryRequest>(),
    }
}

/// Refuses `request` if its body is longer than `max_body_len` (what the
/// server advertised in HELLO) or the protocol's [`MAX_BODY_LEN`]: PROTOCOL.md
/// 4 says a client MUST NOT send it, and the server would close the
/// connection over it (frame_too_large). Checked before anything is encoded.
pub fn check_body_len(request: &Request<'_>, max_body_len: u32) -> Result<(), ClientError> {
    let max = max_body_len.min(MAX_BODY_LEN);
    let len = body_len(request);
    if len > max as usize {
        return Err(ClientError::BodyTooLong { opcode: request.opcode(), len, max });
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_len_is_what_encode_writes() {
        let token = [7u8; 40];
        let all = [
            Request::hello(&token),
            Request::Ping,
            Request::Stats,
            create(1, 100, 2, EnvelopeKind::Fixed, 0),
            grab(EnvelopeId(1), 1),
            open(EnvelopeId(1), 1),
            query(EnvelopeId(1), 0, 10),
        ];
        for request in all {
            let mut out = Vec::new();
            request.encode(1, &mut out);
            assert_eq!(body_len(&request) + hongbao_protocol::header::HEADER_LEN, out.len(), "{request:?}");
        }
    }

    #[test]
    fn a_body_above_the_advertised_limit_is_refused() {
        let token = [7u8; 40];
        assert!(check_body_len(&Request::hello(&token), 48).is_ok());
        let err = check_body_len(&Request::hello(&token), 47).unwrap_err();
        assert!(matches!(err, ClientError::BodyTooLong { len: 48, max: 47, .. }), "{err:?}");
        // The protocol's limit stands whatever a server advertises.
        let huge = vec![0u8; MAX_BODY_LEN as usize];
        assert!(check_body_len(&Request::hello(&huge), u32::MAX).is_err());
    }
}
