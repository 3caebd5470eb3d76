//! The bodies of the server's fuzz targets, here so that the fuzzer and the
//! corpus regression test run the very same code:
//!
//! * `log_replay`: arbitrary bytes as a log and as a snapshot. Scanning and
//!   replaying return errors, never panic, and whatever replays leaves an
//!   engine whose invariants hold.
//! * `server_input`: arbitrary bytes as what a client sends, in arbitrary
//!   pieces, through the connection's frame loop, the handler and the engine,
//!   as the socket loop runs them. Nothing panics (an engine assertion
//!   failing would stop a real server), every answer is a valid response
//!   frame, and the engine's invariants hold after every piece.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hongbao_protocol::{decode_frame, Frame};
use zerocopy::little_endian::U16;

use crate::auth::Auth;
use crate::clock::SystemClock;
use crate::counters::ShardCounters;
use crate::engine::{Engine, EngineConfig};
use crate::forward::Forwarder;
use crate::net::frames::{answer_buffer, Next};
use crate::shard::Shard;
use crate::wal::{scan, snapshot};

/// The token of a `server_input` run that asks for authentication.
const FUZZ_TOKEN: &[u8] = b"fuzz";

/// Feeds `data` to the log scan and replay, and to the snapshot decoder and
/// restore.
pub fn log_replay(data: &[u8]) {
    if let Ok(scanned) = scan(data, 1) {
        let mut engine = Engine::new(EngineConfig::default());
        for record in &scanned.records {
            if engine.replay(record).is_err() {
                break;
            }
        }
        engine.finish_replay();
    }
    if let Ok(image) = snapshot::decode(data) {
        let mut engine = Engine::new(EngineConfig { shard_id: image.shard, ..EngineConfig::default() });
        if engine.restore(&image.records, &image.generations, image.covers).is_ok() {
            engine.finish_replay();
        }
    }
}

/// Feeds `data` to a shard as one connection's bytes. The first byte picks
/// the settings (authentication, body limit) and how the rest is cut into
/// pieces; the rest is the stream.
pub fn server_input(data: &[u8]) {
    let Some((&settings, stream)) = data.split_first() else { return };
    let shard = small_shard(settings);
    let mut forwarder = Forwarder::new(shard.shard_count);
    let mut authenticated = !shard.auth.required();
    let mut input = Vec::new();
    let mut out = Vec::new();
    // Pieces of 1 to 64 bytes: every cut of a frame (header split, body
    // split) happens somewhere.
    let piece = 1 + usize::from(settings >> 2) % 64;
    // A small in-flight budget now and then, as a connection at its limit has.
    let frames_max = if settings & 0x80 == 0x80 { 3 } else { usize::MAX };
    for chunk in stream.chunks(piece) {
        input.extend_from_slice(chunk);
        let answered =
            answer_buffer(&shard, &input, &mut forwarder, &mut out, &mut authenticated, frames_max);
        assert!(answered.consumed <= input.len() && answered.frames <= frames_max);
        input.drain(..answered.consumed);
        let next = answered.next;
        check_answers(&out);
        out.clear();
        if !forwarder.is_empty() {
            // The other shard answers elsewhere; here its frames are dropped,
            // as a flush would take them.
            forwarder = Forwarder::new(shard.shard_count);
        }
        let mut engine = shard.engine.borrow_mut();
        // Far enough ahead that reservations lapse and envelopes expire.
        engine.tick(shard.now_ms() + 61_000, 1_000);
        engine.assert_all_invariants();
        drop(engine);
        if next == Next::Close {
            break;
        }
    }
}

/// A shard of two (so some requests are for the other one) with small
/// limits, so that the fuzzer reaches full envelopes and a full shard.
pub(crate) fn small_shard(settings: u8) -> Shard {
    let engine = Engine::new(EngineConfig {
        shard_id: 0,
        max_count: 100,
        share_cap_cents: 10_000,
        reservation_ttl_ms: 60_000,
        expiry_secs_default: 3_600,
        expiry_secs_max: 86_400,
        retention_secs: 60,
        envelopes_max: 32,
        claims_max: 1_000,
        seed: u64::from(settings),
    });
    let auth =
        if settings & 1 == 1 { Auth::with_token(FUZZ_TOKEN).expect("a short token") } else { Auth::none() };
    let max_body_bytes = if settings & 2 == 2 { 64 } else { hongbao_protocol::limits::MAX_BODY_LEN };
    Shard {
        id: 0,
        shard_count: 2,
        ports: vec![U16::new(7401), U16::new(7402)],
        engine: Rc::new(RefCell::new(engine)),
        counters: ShardCounters::default(),
        started: Instant::now(),
        max_connections: 16,
        read_buffer_bytes: 1 << 18,
        spin: Duration::ZERO,
        clock: SystemClock,
        stopping: Arc::new(AtomicBool::new(false)),
        failure: Arc::default(),
        commit: None,
        auth,
        auth_timeout: Duration::from_secs(10),
        frame_timeout: Duration::from_secs(10),
        max_body_bytes,
        max_connections_per_ip: 16,
        max_in_flight: 1_024,
        per_source: RefCell::new(ahash::AHashMap::new()),
        metrics: Arc::new(crate::metrics::Metrics::new(2)),
    }
}

/// Every byte the server wrote is a whole, valid response frame.
fn check_answers(out: &[u8]) {
    let mut at = 0;
    while at < out.len() {
        let frame: Frame<'_> = match decode_frame(&out[at..]) {
            Ok(Some(frame)) => frame,
            other => panic!("the server wrote something that is not a frame at {at}: {other:?}"),
        };
        assert!(frame.header.is_response(), "the server wrote a request");
        at += frame.wire_len();
    }
}
