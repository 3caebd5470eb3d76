//! One client connection: read a large chunk, answer every whole frame in it,
//! write all the answers with one write.
//!
//! ```text
//!   read ──► decode frames ──► own shard's? ── yes ──► engine ──► out
//!                                  │ no
//!                                  └──► Forwarder (one batch per shard) ──► out
//!   out ──► wait for the log's group commit ──► one write
//! ```
//!
//! Buffers are allocated once per connection; the loop allocates nothing per
//! request. A frame that cannot be decoded is answered (malformed frame, frame
//! too large, unsupported version) and the connection closes after the write;
//! an unknown opcode is answered and skipped.

use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use hongbao_protocol::limits::MAX_FRAME_LEN;
use hongbao_protocol::{decode_frame, Request};

use crate::counters::add;
use crate::forward::{owner_of, Forwarder};
use crate::handler::{answer_frame, answer_frame_error, answer_request};
use crate::shard::{MeshSenders, Shard};

/// Receive buffer of a new connection.
const READ_BUFFER_START: usize = 16 * 1024;

/// Answers are written once they pass this many bytes, even in the middle of a
/// read, so a pipeline of QUERYs cannot grow the output buffer without bound.
const OUT_FLUSH_BYTES: usize = 1 << 20;

/// What handling the buffered bytes left to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Every whole frame is answered: read more.
    Read,
    /// The output is full: write it, then go on with the frames still buffered.
    Write,
    /// Write the answers, then close.
    Close,
}

/// Serves one connection until the peer closes, an error, or shutdown.
pub async fn serve_connection(shard: Rc<Shard>, mesh: Rc<MeshSenders>, mut stream: TcpStream) {
    add(&shard.counters.connections, 1);
    // The buffer starts small (thousands of idle connections cost little)
    // and doubles while reads fill it, up to the limit, which holds at least
    // two of the largest frames.
    let buffer_max = shard.read_buffer_bytes.max(2 * MAX_FRAME_LEN);
    let mut buf = vec![0u8; READ_BUFFER_START.min(buffer_max)];
    let mut out = Vec::with_capacity(64 * 1024);
    let mut forwarder = Forwarder::new(shard.shard_count);
    let mut filled = 0;
    let mut next = Next::Read;
    let mut authenticated = !shard.auth.required();
    // A client that sends requests but does not read its answers is cut off
    // once a write has waited this long, instead of holding its buffers.
    let _ = stream.set_write_timeout(Some(shard.frame_timeout));
    let auth_deadline = std::time::Instant::now() + shard.auth_timeout;
    let mut read_timeout = None;
    loop {
        if next == Next::Read {
            // Slow clients are cut off, not waited on: one that has not
            // authenticated in time, or that started a frame and stalls.
            let timeout = if !authenticated {
                match auth_deadline.checked_duration_since(std::time::Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => break,
                }
            } else if filled > 0 {
                Some(shard.frame_timeout)
            } else {
                None
            };
            // Arming a read timeout costs a timer per pending read: change it
            // only when the wanted value changes.
            if timeout != read_timeout {
                if stream.set_read_timeout(timeout).is_err() {
                    break;
                }
                read_timeout = timeout;
            }
            if filled == buf.len() {
                // A frame bigger than the buffer so far: make room for it.
                buf.resize((buf.len() * 2).min(buffer_max), 0);
            }
            let n = match stream.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            filled += n;
            if filled == buf.len() && buf.len() < buffer_max {
                // The client pipelines more than fits: let it.
                buf.resize((buf.len() * 2).min(buffer_max), 0);
            }
            add(&shard.counters.bytes_in, n as u64);
        }
        let batch_started = std::time::Instant::now();
        let since = shard.last_change();
        let consumed;
        (consumed, next) =
            answer_buffer(&shard, &buf[..filled], &mut forwarder, &mut out, &mut authenticated);
        // Group commit: the answers go out only once the changes they
        // acknowledge are durable. Forwarded answers come back durable.
        if !shard.durable_since(since).await {
            break;
        }
        if !forwarder.is_empty() {
            let forwarded = forwarder.flush(&mesh, &mut out).await;
            if forwarded == u64::MAX {
                next = Next::Close;
            } else {
                add(&shard.counters.forwarded_out, forwarded);
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                break;
            }
            add(&shard.counters.bytes_out, out.len() as u64);
            shard.counters.latency.record_answers(&out, batch_started.elapsed());
            out.clear();
        }
        if next == Next::Close || shard.is_stopping() {
            break;
        }
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
    }
    let _ = stream.close().await;
    shard.counters.connections.set(shard.counters.connections.get() - 1);
}

/// Answers or queues the whole frames at the front of `bytes`, until they run
/// out or the output is full. Returns the bytes consumed and what to do next.
fn answer_buffer(
    shard: &Shard,
    bytes: &[u8],
    forwarder: &mut Forwarder,
    out: &mut Vec<u8>,
    authenticated: &mut bool,
) -> (usize, Next) {
    let now_ms = shard.now_ms();
    let mut engine = shard.engine.borrow_mut();
    let mut at = 0;
    loop {
        if out.len() >= OUT_FLUSH_BYTES {
            return (at, Next::Write);
        }
        // The server's own body limit (at most the protocol's), judged as soon
        // as the header is in, before the body is waited for.
        if let Some(len) = bytes.get(at + 8..at + 12) {
            let body_len = u32::from_le_bytes(len.try_into().expect("4 bytes"));
            if body_len > shard.max_body_bytes && bytes[at..at + 2] == hongbao_protocol::MAGIC {
                let error =
                    hongbao_protocol::FrameError::BodyTooLarge { len: body_len, max: shard.max_body_bytes };
                if bytes.len() - at >= hongbao_protocol::HEADER_LEN {
                    answer_frame_error(&bytes[at..], &error, out);
                    return (at, Next::Close);
                }
            }
        }
        let frame = match decode_frame(&bytes[at..]) {
            Ok(Some(frame)) => frame,
            Ok(None) => return (at, Next::Read),
            Err(error) => {
                answer_frame_error(&bytes[at..], &error, out);
                match error.skippable_len() {
                    Some(len) => {
                        at += len;
                        continue;
                    }
                    None => return (at, Next::Close),
                }
            }
        };
        let len = frame.wire_len();
        match Request::decode(&frame) {
            Ok(request) if !admitted(shard, &request, authenticated) => {
                refuse_unauthenticated(&frame, &request, out)
            }
            Ok(request) => match owner_of(&request, shard.id, shard.shard_count) {
                Some(owner) => forwarder.push(owner, &bytes[at..at + len]),
                None => answer_request(shard, &mut engine, now_ms, &frame, &request, out),
            },
            Err(_) => {
                // Answered (malformed, or unknown opcode and skipped) by the handler.
                if !answer_frame(shard, &mut engine, now_ms, &frame, out) {
                    return (at + len, Next::Close);
                }
            }
        }
        at += len;
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

/// Answers a request the connection may not make: `not_authenticated`, with
/// GRAB's and OPEN's fixed (zero) body.
fn refuse_unauthenticated(frame: &hongbao_protocol::Frame<'_>, request: &Request<'_>, out: &mut Vec<u8>) {
    let body: &[u8] = match request {
        Request::Grab(_) => &[0; 24],
        Request::Open(_) => &[0; 16],
        _ => &[],
    };
    hongbao_protocol::codec::write_response(
        out,
        frame.header.opcode,
        frame.request_id(),
        hongbao_protocol::Status::NotAuthenticated,
        &[body],
    );
}
