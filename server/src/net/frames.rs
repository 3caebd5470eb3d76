//! Answering the whole frames at the front of a byte buffer: the sans-IO part
//! of a connection, shared by every way bytes arrive.
//!
//! Frames for this shard's envelopes are answered at once into the output
//! buffer; frames for another shard's are queued, raw, on the connection's
//! [`Forwarder`]. A frame that cannot be decoded is answered (malformed frame,
//! frame too large, unsupported version) and the connection must close after
//! the answers are written; an unknown opcode is answered and skipped. Nothing
//! here allocates per request.
//!
//! GRAB and OPEN frames, nearly all of a storm, are read in one pass by the
//! protocol's hot path and answered straight into the output; every other
//! frame, and any GRAB or OPEN the hot path does not read, takes the general
//! path (frame decode, request decode, routing, handler), which says the same
//! of them.

use hongbao_protocol::body::{EnvelopeUser, FixedBody};
use hongbao_protocol::hot_path::{read_envelope_user_request, EnvelopeUserOp, ENVELOPE_USER_FRAME_LEN};
use hongbao_protocol::{decode_frame, Request};

use crate::forward::{owner_of, Forwarder};
use crate::handler::{
    answer_frame, answer_frame_error, answer_grab, answer_open, answer_request, refuse_unauthenticated,
};
use crate::shard::Shard;

/// Answers are written once they pass this many bytes, even in the middle of a
/// read, so a pipeline of QUERYs cannot grow the output buffer without bound.
pub const OUT_FLUSH_BYTES: usize = 1 << 20;

/// What handling the buffered bytes left to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Every whole frame is answered: read more.
    Read,
    /// The output is full: write it, then go on with the frames still buffered.
    Write,
    /// Write the answers, then close.
    Close,
}

/// What [`answer_buffer`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    /// Bytes of the buffer taken.
    pub consumed: usize,
    /// Frames taken (answered, refused or queued for another shard).
    pub frames: usize,
    /// What to do next.
    pub next: Next,
}

/// Answers or queues the whole frames at the front of `bytes`, until they run
/// out, the output is full, or `frames_max` frames are taken.
pub fn answer_buffer(
    shard: &Shard,
    bytes: &[u8],
    forwarder: &mut Forwarder,
    out: &mut Vec<u8>,
    authenticated: &mut bool,
    frames_max: usize,
) -> Answered {
    let now_ms = shard.now_ms();
    let mut engine = shard.engine.borrow_mut();
    // GRAB and OPEN, nearly every frame of a storm, take the hot path when
    // nothing else would be said of them: their body is within the server's
    // limit, the log takes changes (neither changes during this call, which
    // does not yield), and the connection may ask.
    let hot = shard.max_body_bytes as usize >= EnvelopeUser::SIZE && !shard.refuses_changes();
    let auth_required = shard.auth.required();
    let mut at = 0;
    let mut frames = 0;
    let done = |consumed, frames, next| Answered { consumed, frames, next };
    loop {
        if out.len() >= OUT_FLUSH_BYTES || frames >= frames_max {
            return done(at, frames, Next::Write);
        }
        if hot && (*authenticated || !auth_required) {
            if let Some(request) = read_envelope_user_request(&bytes[at..]) {
                // Routed as the general path routes a GRAB or OPEN.
                match owner_of(&Request::Grab(request.body), shard.id, shard.shard_count) {
                    Some(owner) => forwarder.push(owner, &bytes[at..at + ENVELOPE_USER_FRAME_LEN]),
                    None => {
                        crate::counters::add(&shard.counters.requests, 1);
                        let (id, body) = (request.request_id, &request.body);
                        match request.op {
                            EnvelopeUserOp::Grab => answer_grab(shard, &mut engine, now_ms, id, body, out),
                            EnvelopeUserOp::Open => answer_open(shard, &mut engine, now_ms, id, body, out),
                        }
                    }
                }
                at += ENVELOPE_USER_FRAME_LEN;
                frames += 1;
                continue;
            }
        }
        // The server's own body limit (at most the protocol's), judged as soon
        // as the header is in, before the body is waited for.
        if let Some(len) = bytes.get(at + 8..at + 12) {
            let body_len = u32::from_le_bytes(len.try_into().expect("4 bytes"));
            if body_len > shard.max_body_bytes && bytes[at..at + 2] == hongbao_protocol::MAGIC {
                let error =
                    hongbao_protocol::FrameError::BodyTooLarge { len: body_len, max: shard.max_body_bytes };
                if bytes.len() - at >= hongbao_protocol::HEADER_LEN {
                    answer_frame_error(shard, &bytes[at..], &error, out);
                    return done(at, frames + 1, Next::Close);
                }
            }
        }
        let frame = match decode_frame(&bytes[at..]) {
            Ok(Some(frame)) => frame,
            Ok(None) => return done(at, frames, Next::Read),
            Err(error) => {
                answer_frame_error(shard, &bytes[at..], &error, out);
                frames += 1;
                match error.skippable_len() {
                    Some(len) => {
                        at += len;
                        continue;
                    }
                    None => return done(at, frames, Next::Close),
                }
            }
        };
        let len = frame.wire_len();
        match Request::decode(&frame) {
            Ok(request) if !admitted(shard, &request, authenticated) => {
                refuse_unauthenticated(shard, &frame, &request, out)
            }
            Ok(request) => match owner_of(&request, shard.id, shard.shard_count) {
                Some(owner) => forwarder.push(owner, &bytes[at..at + len]),
                None => answer_request(shard, &mut engine, now_ms, &frame, &request, out),
            },
            Err(_) => {
                // Answered (malformed, or unknown opcode and skipped) by the handler.
                if !answer_frame(shard, &mut engine, now_ms, &frame, out) {
                    return done(at + len, frames + 1, Next::Close);
                }
            }
        }
        at += len;
        frames += 1;
    }
}

/// Whether `request` may be answered on this connection. HELLO with the
/// right token authenticates it; before that only HELLO and PING pass.
fn admitted(shard: &Shard, request: &Request<'_>, authenticated: &mut bool) -> bool {
    if !shard.auth.required() {
        return true;
    }
    match request {
        Request::Hello { token, .. } => {
            let accepted = shard.auth.accepts(token);
            *authenticated |= accepted;
            accepted
        }
        Request::Ping => true,
        _ => *authenticated,
    }
}
