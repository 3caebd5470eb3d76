//! Answers request frames against the shard's engine, appending response
//! frames to an output buffer.
//!
//! The same code serves frames read from a client and frames another shard
//! forwarded, so a request gets the same answer whichever port it came in on.
//! Answers are only appended to `out`, never written here: the caller decides
//! when `out` goes to the socket. That is the seam where the write-ahead log's
//! group commit will hold answers back until their records are durable.

use hongbao_protocol::body::{EnvelopeUser, HelloResponse};
use hongbao_protocol::codec::{write_response, ResponseBuilder};
use hongbao_protocol::header::{HEADER_LEN, VERSION};
use hongbao_protocol::hot_path::{write_grab_response, write_open_response};
use hongbao_protocol::limits::MAX_QUERY_PAGE;
use hongbao_protocol::{Frame, FrameError, Opcode, Request, Status};
use zerocopy::little_endian::{U16, U32};
use zerocopy::IntoBytes;

use crate::engine::Engine;
use crate::shard::Shard;

/// Answers one whole, header-valid request frame. Returns `false` when the
/// body could not be decoded: the answer (malformed frame) is in `out`, and the
/// connection must close after it is written.
pub fn answer_frame(
    shard: &Shard,
    engine: &mut Engine,
    now_ms: u64,
    frame: &Frame<'_>,
    out: &mut Vec<u8>,
) -> bool {
    match Request::decode(frame) {
        Ok(request) => {
            answer_request(shard, engine, now_ms, frame, &request, out);
            true
        }
        Err(error) => {
            crate::counters::add(&shard.counters.requests, 1);
            respond(shard, out, frame.header.opcode, frame.request_id(), error.status(), &[]);
            error.skippable_len().is_some()
        }
    }
}

/// Answers one decoded request of `frame`.
pub fn answer_request(
    shard: &Shard,
    engine: &mut Engine,
    now_ms: u64,
    frame: &Frame<'_>,
    request: &Request<'_>,
    out: &mut Vec<u8>,
) {
    let id = frame.request_id();
    let opcode = frame.header.opcode;
    crate::counters::add(&shard.counters.requests, 1);
    if shard.refuses_changes() && !engine.refuses_changes() {
        // The log failed: no change can be made durable, so the engine makes
        // none, and answers the rest (a repeated OPEN's amount) as before.
        engine.refuse_changes();
    }
    match *request {
        Request::Grab(body) => answer_grab(shard, engine, now_ms, id, &body, out),
        Request::Open(body) => answer_open(shard, engine, now_ms, id, &body, out),
        Request::Create(body) => match engine.create(now_ms, &body) {
            Ok(answer) => respond(shard, out, opcode, id, Status::Ok, &[answer.as_bytes()]),
            Err(status) => respond(shard, out, opcode, id, status, &[]),
        },
        Request::Query(body) => {
            let limit = body.page_limit.get();
            match engine.query(now_ms, body.envelope.get(), body.page_start.get(), limit) {
                Ok((fixed, page)) => {
                    shard.counters.answers.record(opcode, Status::Ok);
                    let response = ResponseBuilder::begin(out, opcode, id, Status::Ok);
                    out.extend_from_slice(fixed.as_bytes());
                    out.extend_from_slice(page.as_bytes());
                    response.finish(out);
                }
                Err(status) => respond(shard, out, opcode, id, status, &[]),
            }
        }
        Request::Ping => respond(shard, out, opcode, id, Status::Ok, &[]),
        Request::Hello { hello, token: _ } => {
            // The token was judged before the request came here (see
            // `net::frames::admitted`); a server without tokens ignores it.
            if !(hello.version_min..=hello.version_max).contains(&VERSION) {
                respond(shard, out, opcode, id, Status::UnsupportedVersion, &[]);
            } else {
                let answer = HelloResponse {
                    version: VERSION,
                    reserved0: 0,
                    shard_count: U16::new(shard.shard_count),
                    shard_id: U16::new(shard.id),
                    reserved1: U16::new(0),
                    max_body_len: U32::new(shard.max_body_bytes),
                    max_query_page: U32::new(MAX_QUERY_PAGE),
                };
                respond(shard, out, opcode, id, Status::Ok, &[answer.as_bytes(), shard.ports.as_bytes()]);
            }
        }
        Request::Stats => {
            // Counted before it is written, as `requests` already counts it,
            // so the answer's counts add up to its `requests`.
            shard.counters.answers.record(opcode, Status::Ok);
            crate::stats::answer(shard, engine, opcode, id, out);
        }
    }
}

/// Answers a GRAB whose request is counted and which may change the engine
/// (the log works): the engine's answer, counted by status, appended as one
/// fixed-size frame. Storms are mostly GRAB and OPEN, read straight off the
/// wire by [`crate::net::frames`] and answered here.
#[inline]
pub fn answer_grab(
    shard: &Shard,
    engine: &mut Engine,
    now_ms: u64,
    request_id: u64,
    body: &EnvelopeUser,
    out: &mut Vec<u8>,
) {
    let (status, answer) = engine.grab(now_ms, body.envelope.get(), body.user.get());
    shard.counters.answers.record(Opcode::Grab as u8, status);
    write_grab_response(out, request_id, status, &answer);
}

/// Answers an OPEN, as [`answer_grab`] answers a GRAB.
#[inline]
pub fn answer_open(
    shard: &Shard,
    engine: &mut Engine,
    now_ms: u64,
    request_id: u64,
    body: &EnvelopeUser,
    out: &mut Vec<u8>,
) {
    let (status, answer) = engine.open(now_ms, body.envelope.get(), body.user.get());
    shard.counters.answers.record(Opcode::Open as u8, status);
    write_open_response(out, request_id, status, &answer);
}

/// Answers bytes that can never become a frame: the status of `error`, with
/// the request id and opcode of the header if one is there to read.
pub fn answer_frame_error(shard: &Shard, bytes: &[u8], error: &FrameError, out: &mut Vec<u8>) {
    let (opcode, id) = if bytes.len() >= HEADER_LEN && bytes[..2] == hongbao_protocol::MAGIC {
        (bytes[3], u64::from_le_bytes(bytes[16..24].try_into().unwrap_or([0; 8])))
    } else {
        (0, 0)
    };
    crate::counters::add(&shard.counters.requests, 1);
    respond(shard, out, opcode, id, error.status(), &[]);
}

/// Answers a request the connection may not make yet: `not_authenticated`,
/// with GRAB's and OPEN's fixed (zero) body. Counted like every answer.
pub fn refuse_unauthenticated(shard: &Shard, frame: &Frame<'_>, request: &Request<'_>, out: &mut Vec<u8>) {
    let body: &[u8] = match request {
        Request::Grab(_) => &[0; 24],
        Request::Open(_) => &[0; 16],
        _ => &[],
    };
    crate::counters::add(&shard.counters.requests, 1);
    respond(shard, out, frame.header.opcode, frame.request_id(), Status::NotAuthenticated, &[body]);
}

/// Appends a response and counts it for the metrics.
fn respond(shard: &Shard, out: &mut Vec<u8>, opcode: u8, id: u64, status: Status, parts: &[&[u8]]) {
    shard.counters.answers.record(opcode, status);
    write_response(out, opcode, id, status, parts);
}
