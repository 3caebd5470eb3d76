//! Whether one shard's engine slows down as the envelopes it holds grow.
//!
//! A storm pipelined against a server whose envelopes never leave
//! (`--expires-in 3600`) ran 25-30% slower after about 3 million envelopes
//! (docs/BENCHMARKS.md). This drives the engine alone, no sockets: each
//! envelope of 8 shares is created, grabbed 8 times and opened 8 times, the
//! way the storm does, and nothing is evicted; it prints the wall time per
//! operation for every million envelopes held. Run pinned to one core:
//! `taskset -c 0 cargo run --release -p hongbao-server --example engine_held [MILLIONS]`.

use std::time::Instant;

use hongbao_protocol::body::CreateRequest;
use hongbao_protocol::Status;
use hongbao_server::engine::{Engine, EngineConfig};
use zerocopy::little_endian::{U32, U64};

/// Shares of each envelope: the storm's average.
const COUNT: u32 = 8;
/// Envelopes per printed step.
const STEP: u64 = 1_000_000;

fn main() {
    let millions: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(6);
    let envelopes = millions * STEP;
    let config = EngineConfig {
        envelopes_max: envelopes,
        claims_max: envelopes * u64::from(COUNT),
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config);
    let req = CreateRequest {
        sender: U64::new(1),
        total_cents: U64::new(u64::from(COUNT) * 100),
        count: U32::new(COUNT),
        kind: 0,
        reserved0: [0; 3],
        expires_in_secs: U32::new(3600),
        reserved1: U32::new(0),
    };
    let mut user = 1u64;
    println!("held (millions)  ns per operation (1 CREATE, {COUNT} GRABs, {COUNT} OPENs an envelope)");
    for step in 1..=millions {
        let started = Instant::now();
        for _ in 0..STEP {
            let id = engine.create(0, &req).expect("create").envelope.get();
            for _ in 0..COUNT {
                let (status, _) = engine.grab(1, id, user);
                assert_eq!(status, Status::Ok);
                let (status, _) = engine.open(1, id, user);
                assert_eq!(status, Status::Ok);
                user += 1;
            }
        }
        let ops = STEP * (1 + 2 * u64::from(COUNT));
        let ns = started.elapsed().as_nanos() as f64 / ops as f64;
        println!("{step:>15}  {ns:>8.1}");
    }
}
