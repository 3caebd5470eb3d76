//! Writes seed inputs for the `log_replay` fuzz target: small real logs (and
//! a snapshot) made by the engine's journal, laid out as the segment writer
//! lays them (writes of 4 records, each marking its first), and the same log
//! torn in its last write (a zeroed record before valid ones). The fuzzer
//! cannot forge a marked record (the checksum), so the marks must be seeded.
//! (`log-N` and `snapshot-N` are version 1 seeds from before the marks.)
//! `cargo run -p hongbao-server --example fuzz_seeds -- fuzz/corpus/log_replay`

use hongbao_protocol::body::CreateRequest;
use hongbao_server::engine::{Engine, EngineConfig};
use hongbao_server::wal::{snapshot, Record};
use zerocopy::little_endian::{U32, U64};
use zerocopy::IntoBytes;

/// Records a seed's writes carry.
const WRITE: usize = 4;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: fuzz_seeds DIR");
    std::fs::create_dir_all(&dir).expect("seed directory");
    for (n, count) in [(1u64, 3u32), (2, 70), (3, 1)] {
        let mut engine = Engine::new(EngineConfig { retention_secs: 0, ..EngineConfig::default() });
        engine.enable_journal(1);
        let request = CreateRequest {
            sender: U64::new(1),
            total_cents: U64::new(u64::from(count) * 10),
            count: U32::new(count),
            kind: (n % 2) as u8,
            reserved0: [0; 3],
            expires_in_secs: U32::new(1),
            reserved1: U32::new(0),
        };
        let id = engine.create(0, &request).expect("create").envelope.get();
        for user in 1..=u64::from(count) / 2 + 1 {
            engine.grab(0, id, user);
            engine.open(0, id, user);
        }
        let (image, generations) = engine.image();
        engine.tick(5_000, usize::MAX);
        let mut log: Vec<Record> = Vec::new();
        engine.take_journal(&mut log);
        let written: Vec<Record> = log
            .iter()
            .enumerate()
            .map(|(i, r)| if i % WRITE == 0 { r.marked_write_start() } else { *r })
            .collect();
        let mut bytes: Vec<u8> = written.iter().flat_map(|r| r.as_bytes().to_vec()).collect();
        std::fs::write(format!("{dir}/log-marked-{n}"), &bytes).expect("write seed");
        // Torn: the second record of the last write lost, the rest there.
        let last = (written.len() - 1) / WRITE * WRITE;
        if last + 2 < written.len() {
            let at = (last + 1) * 64;
            bytes[at..at + 64].fill(0);
            std::fs::write(format!("{dir}/log-torn-{n}"), &bytes).expect("write seed");
        }
        std::fs::write(format!("{dir}/snapshot-v2-{n}"), snapshot::encode(0, 3, &generations, &image))
            .expect("write seed");
    }
}
