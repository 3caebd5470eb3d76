//! Writes seed inputs for the `log_replay` fuzz target: small real logs (and
//! a snapshot) made by the engine's journal.
//! `cargo run -p hongbao-server --example fuzz_seeds -- fuzz/corpus/log_replay`

use hongbao_protocol::body::CreateRequest;
use hongbao_server::engine::{Engine, EngineConfig};
use hongbao_server::wal::{snapshot, Record};
use zerocopy::little_endian::{U32, U64};
use zerocopy::IntoBytes;

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
        let bytes: Vec<u8> = log.iter().flat_map(|r| r.as_bytes().to_vec()).collect();
        std::fs::write(format!("{dir}/log-{n}"), bytes).expect("write seed");
        std::fs::write(format!("{dir}/snapshot-{n}"), snapshot::encode(0, 3, &generations, &image))
            .expect("write seed");
    }
}
