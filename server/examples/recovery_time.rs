//! Measures start-up recovery: how long one shard takes to read and replay a
//! log of N records (default 10 million).
//!
//! It builds the log with the real engine's journal (envelopes of 8 shares,
//! every share grabbed and opened: CREATE and OPEN records), writes it as
//! segments the way the server does, then times `recover` on an empty engine.
//! `cargo run --release -p hongbao-server --example recovery_time [RECORDS]`;
//! with `HONGBAO_DROP_CACHES=1` (root) the page cache is dropped first, so the
//! log is read from the disk.

use std::time::Instant;

use hongbao_protocol::body::CreateRequest;
use hongbao_server::engine::{Engine, EngineConfig};
use hongbao_server::wal::recover::recover;
use hongbao_server::wal::segment::{segment_path, SEGMENT_BYTES_MAX};
use hongbao_server::wal::{Record, RECORD_LEN};
use zerocopy::little_endian::{U32, U64};
use zerocopy::IntoBytes;

fn main() {
    let records: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let config = EngineConfig { envelopes_max: 4_000_000, claims_max: 40_000_000, ..EngineConfig::default() };
    let mut engine = Engine::new(config.clone());
    engine.enable_journal(1);
    let request = CreateRequest {
        sender: U64::new(1),
        total_cents: U64::new(800),
        count: U32::new(8),
        kind: 0,
        reserved0: [0; 3],
        expires_in_secs: U32::new(3600),
        reserved1: U32::new(0),
    };
    let dir = std::env::temp_dir().join(format!("hongbao-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let started = Instant::now();
    let mut journal: Vec<Record> = Vec::new();
    let mut segment: Vec<u8> = Vec::new();
    let mut segment_first = 1u64;
    let mut written = 0u64;
    let mut user = 1u64;
    while written < records {
        let id = engine.create(0, &request).expect("create").envelope.get();
        for _ in 0..8 {
            engine.grab(0, id, user);
            engine.open(0, id, user);
            user += 1;
        }
        engine.take_journal(&mut journal);
        for record in journal.drain(..) {
            if written == records {
                break;
            }
            segment.extend_from_slice(record.as_bytes());
            written += 1;
            if segment.len() as u64 >= SEGMENT_BYTES_MAX {
                std::fs::write(segment_path(&dir, segment_first), &segment).expect("write segment");
                segment_first += (segment.len() / RECORD_LEN) as u64;
                segment.clear();
            }
        }
    }
    if !segment.is_empty() {
        std::fs::write(segment_path(&dir, segment_first), &segment).expect("write segment");
    }
    drop(engine);
    println!(
        "wrote {written} records ({} MiB) in {:.1} s",
        (written * 64) >> 20,
        started.elapsed().as_secs_f64()
    );

    if std::env::var_os("HONGBAO_DROP_CACHES").is_some() {
        // Cold start: flush and drop the page cache (root only).
        let _ = std::process::Command::new("sync").status();
        match std::fs::write("/proc/sys/vm/drop_caches", "3") {
            Ok(()) => println!("page cache dropped: the log is read from disk"),
            Err(e) => println!("cannot drop the page cache ({e}): the log is read from memory"),
        }
    }
    let mut recovered = Engine::new(config);
    let started = Instant::now();
    let found = recover(&mut recovered, &dir).expect("recover");
    let elapsed = started.elapsed();
    println!(
        "recovered {} records from {} segments in {:.2} s ({:.1} M records/s), {} envelopes",
        found.records,
        found.segments,
        elapsed.as_secs_f64(),
        found.records as f64 / elapsed.as_secs_f64() / 1e6,
        recovered.envelope_count()
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}
