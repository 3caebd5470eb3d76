//! The body of the `log_replay` fuzz target, here so that the fuzzer and the
//! corpus regression test run the very same code: arbitrary bytes as a log
//! and as a snapshot. Scanning and replaying return errors, never panic, and
//! whatever replays leaves an engine whose invariants hold.

use crate::engine::{Engine, EngineConfig};
use crate::wal::{scan, snapshot};

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
