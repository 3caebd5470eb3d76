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

/// Answers are written once they pass this many bytes (or the smaller
/// `--max-buffered-bytes`, see [`out_max`]), even in the middle of a read, so
/// a pipeline of QUERYs cannot grow the output buffer without bound (frames
/// forwarded to other shards count with the most their answers take).
pub const OUT_FLUSH_BYTES: usize = 1 << 20;

/// The most answer bytes a connection of `shard` gathers before it writes
/// them: `--max-buffered-bytes`, at most [`OUT_FLUSH_BYTES`]. With the one
/// send in flight, a client that does not read holds at most twice this
/// (plus one answer) of the server's memory until its send times out.
pub fn out_max(shard: &Shard) -> usize {
    shard.read_buffer_bytes.min(OUT_FLUSH_BYTES)
}

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
    let out_max = out_max(shard);
    let mut at = 0;
    let mut frames = 0;
    let done = |consumed, frames, next| Answered { consumed, frames, next };
    loop {
        // Forwarded frames count with the most their answers can take: the
        // answers join this output when they come back.
        if out.len() + forwarder.answer_bytes() >= out_max || frames >= frames_max {
            return done(at, frames, Next::Write);
        }
        if hot && (*authenticated || !auth_required) {
            if let Some(request) = read_envelope_user_request(&bytes[at..]) {
                // Routed as the general path routes a GRAB or OPEN.
                match owner_of(&Request::Grab(request.body), shard.id, shard.shard_count) {
                    Some(owner) => {
                        let answer_len_max = crate::forward::answer_len_max(&Request::Grab(request.body));
                        forwarder.push(owner, &bytes[at..at + ENVELOPE_USER_FRAME_LEN], answer_len_max)
                    }
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
            // Only for a header whose magic and version are right: §2.6 judges
            // the version before the length (a frame of another version may
            // mean its length otherwise).
            if body_len > shard.max_body_bytes
                && bytes[at..at + 2] == hongbao_protocol::MAGIC
                && bytes[at + 2] == hongbao_protocol::VERSION
            {
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
                Some(owner) => {
                    forwarder.push(owner, &bytes[at..at + len], crate::forward::answer_len_max(&request))
                }
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
/// right token authenticates it, and with a wrong one ends that; while it is
/// not authenticated only HELLO and PING pass.
fn admitted(shard: &Shard, request: &Request<'_>, authenticated: &mut bool) -> bool {
    if !shard.auth.required() {
        return true;
    }
    match request {
        Request::Hello { token, .. } => {
            // The latest HELLO decides (§3.4): a refused token after an
            // accepted one leaves the connection unauthenticated, so a client
            // that rotates to a wrong token learns it at once, not at the
            // next connection.
            let accepted = shard.auth.accepts(token);
            if *authenticated && !accepted {
                crate::counters::add(&shard.counters.authentications_ended, 1);
            }
            *authenticated = accepted;
            accepted
        }
        Request::Ping => true,
        _ => *authenticated,
    }
}

#[cfg(test)]
mod tests {
    use hongbao_protocol::body::FixedBody;
    use hongbao_protocol::body::{CreateRequest, CreateResponse, EnvelopeKind, EnvelopeUser, OpenResponse};
    use hongbao_protocol::response::Response;
    use hongbao_protocol::{decode_frame, Opcode, Request, Status};
    use zerocopy::little_endian::{U32, U64};

    use super::*;
    use crate::forward::Forwarder;

    /// One connection's state around [`answer_buffer`].
    struct Client {
        forwarder: Forwarder,
        out: Vec<u8>,
        authenticated: bool,
    }

    impl Client {
        fn new(shard: &Shard) -> Client {
            Client { forwarder: Forwarder::new(shard.shard_count), out: Vec::new(), authenticated: true }
        }

        /// Answers `requests` as one batch; the answers and the log record
        /// the batch must wait for.
        fn batch(&mut self, shard: &Shard, requests: &[Request<'_>]) -> (Vec<(Status, Vec<u8>)>, u64) {
            let mut bytes = Vec::new();
            for (i, request) in requests.iter().enumerate() {
                request.encode(i as u64 + 1, &mut bytes);
            }
            self.out.clear();
            let answered = answer_buffer(
                shard,
                &bytes,
                &mut self.forwarder,
                &mut self.out,
                &mut self.authenticated,
                usize::MAX,
            );
            assert_eq!((answered.consumed, answered.frames), (bytes.len(), requests.len()));
            let mut answers = Vec::new();
            let mut at = 0;
            while let Ok(Some(frame)) = decode_frame(&self.out[at..]) {
                let response = Response::from_frame(&frame).unwrap();
                answers.push((response.status, response.body.to_vec()));
                at += frame.wire_len();
            }
            (answers, shard.take_depends())
        }
    }

    fn pair(envelope: u64, user: u64) -> EnvelopeUser {
        EnvelopeUser { envelope: U64::new(envelope), user: U64::new(user) }
    }

    /// A pipeline of QUERYs for another shard's envelope stops at the output
    /// limit, counting each with the largest answer it can get back (a full
    /// page of claims), as local QUERYs stop once their answers fill it.
    #[test]
    fn forwarded_frames_count_against_the_output_limit() {
        use hongbao_protocol::body::QueryRequest;
        let shard = crate::fuzz::small_shard(0);
        let mut forwarder = Forwarder::new(shard.shard_count);
        let other = hongbao_protocol::EnvelopeId::new(1, 5).0;
        let query = QueryRequest {
            envelope: U64::new(other),
            page_start: U32::new(0),
            page_limit: U32::new(u32::MAX),
        };
        let mut bytes = Vec::new();
        for id in 0..4_096 {
            Request::Query(query).encode(id, &mut bytes);
        }
        let bound = crate::forward::answer_len_max(&Request::Query(query));
        assert_eq!(bound, hongbao_protocol::HEADER_LEN + 104 + 1024 * 24, "a full page");
        let (mut out, mut authenticated) = (Vec::new(), true);
        let answered =
            answer_buffer(&shard, &bytes, &mut forwarder, &mut out, &mut authenticated, usize::MAX);
        assert_eq!(answered.next, Next::Write);
        let limit = out_max(&shard);
        assert_eq!(answered.frames, limit.div_ceil(bound), "{bound} bytes an answer, {limit} in all");
        assert!(forwarder.answer_bytes() < limit + bound && out.is_empty());
        // GRABs for the other shard reserve a small answer each.
        let grab = crate::forward::answer_len_max(&Request::Grab(pair(other, 1)));
        assert!(grab <= 64, "{grab}");
    }

    /// A header of another version is answered unsupported_version even
    /// when its length is past the server's body limit: the version is
    /// judged first (§2.6), as `decode_frame` would.
    #[test]
    fn a_header_of_another_version_is_judged_on_its_version_before_its_length() {
        let shard = crate::fuzz::small_shard(0);
        let mut bytes = Vec::new();
        Request::Ping.encode(1, &mut bytes);
        bytes[2] = hongbao_protocol::VERSION + 1;
        bytes[8..12].copy_from_slice(&(shard.max_body_bytes + 1).to_le_bytes());
        // What the connection is told, and whether it is closed after.
        let judge = |bytes: &[u8]| {
            let mut client = Client::new(&shard);
            let answered = answer_buffer(
                &shard,
                bytes,
                &mut client.forwarder,
                &mut client.out,
                &mut client.authenticated,
                usize::MAX,
            );
            let frame = decode_frame(&client.out).unwrap().unwrap();
            (Response::from_frame(&frame).unwrap().status, answered.next)
        };
        assert_eq!(judge(&bytes), (Status::UnsupportedVersion, Next::Close));
        // The right version with the same length is too large.
        bytes[2] = hongbao_protocol::VERSION;
        assert_eq!(judge(&bytes), (Status::FrameTooLarge, Next::Close));
    }

    /// Through the frame loop's hot path too: a connection that repeats
    /// another's OPEN waits for the first OPEN's record, as the first does.
    #[test]
    fn a_repeated_open_waits_for_the_first_ones_record() {
        let shard = crate::fuzz::small_shard(0);
        shard.engine.borrow_mut().enable_journal(1);
        let mut a = Client::new(&shard);
        let create = CreateRequest {
            sender: U64::new(1),
            total_cents: U64::new(500),
            count: U32::new(5),
            kind: EnvelopeKind::Random as u8,
            reserved0: [0; 3],
            expires_in_secs: U32::new(60),
            reserved1: U32::new(0),
        };
        let (answers, need) = a.batch(&shard, &[Request::Create(create)]);
        assert_eq!((answers[0].0, need), (Status::Ok, 1));
        let envelope = CreateResponse::decode(Opcode::Create as u8, &answers[0].1).unwrap().envelope.get();

        let (answers, need) =
            a.batch(&shard, &[Request::Grab(pair(envelope, 7)), Request::Open(pair(envelope, 7))]);
        assert_eq!((answers[0].0, answers[1].0, need), (Status::Ok, Status::Ok, 2));
        let paid = OpenResponse::decode(Opcode::Open as u8, &answers[1].1).unwrap();

        let mut b = Client::new(&shard);
        let (answers, need) = b.batch(&shard, &[Request::Open(pair(envelope, 7))]);
        assert_eq!(answers[0].0, Status::Ok);
        assert_eq!(OpenResponse::decode(Opcode::Open as u8, &answers[0].1).unwrap(), paid);
        assert_eq!(need, 2, "the repeat shows record 2");
        let (_, need) = b.batch(&shard, &[Request::Ping]);
        assert_eq!(need, 0, "PING shows nothing");
    }
}
