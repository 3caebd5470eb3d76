//! Snapshots: recovery from a snapshot plus the log after it gives the same
//! state as the whole log; segments the snapshot covers can go; a damaged
//! snapshot stops recovery with its file named.

use std::path::Path;

use hongbao_protocol::body::CreateRequest;
use hongbao_protocol::Status;
use hongbao_server::engine::{Engine, EngineConfig};
use hongbao_server::wal::recover::recover;
use hongbao_server::wal::segment::{list_segments, segment_path};
use hongbao_server::wal::snapshot::{encode, snapshot_path};
use hongbao_server::wal::Record;
use zerocopy::little_endian::{U32, U64};
use zerocopy::IntoBytes;

fn config() -> EngineConfig {
    EngineConfig { shard_id: 0, retention_secs: 1, seed: 3, ..EngineConfig::default() }
}

fn create(engine: &mut Engine, now: u64, count: u32) -> Option<u64> {
    let req = CreateRequest {
        sender: U64::new(1),
        total_cents: U64::new(u64::from(count) * 50),
        count: U32::new(count),
        kind: 0,
        reserved0: [0; 3],
        expires_in_secs: U32::new(2),
        reserved1: U32::new(0),
    };
    engine.create(now, &req).ok().map(|r| r.envelope.get())
}

fn state(engine: &mut Engine, now: u64, ids: &[u64]) -> Vec<String> {
    ids.iter()
        .map(|id| match engine.query(now, *id, 0, u32::MAX) {
            Ok((q, page)) => format!(
                "{id} {} {} {} {} {:?}",
                q.paid_cents,
                q.refunded_cents,
                q.state,
                q.best_user,
                page.iter().map(|c| (c.user.get(), c.amount_cents.get())).collect::<Vec<_>>()
            ),
            Err(status) => format!("{id} {status}"),
        })
        .collect()
}

fn write_segments(dir: &Path, records: &[Record], per_segment: usize) {
    for (i, chunk) in records.chunks(per_segment).enumerate() {
        let first = (i * per_segment) as u64 + 1;
        let bytes: Vec<u8> = chunk.iter().flat_map(|r| r.as_bytes().to_vec()).collect();
        std::fs::write(segment_path(dir, first), bytes).unwrap();
    }
}

#[test]
fn snapshot_plus_log_tail_equals_the_whole_log() {
    let dir = std::env::temp_dir().join(format!("hongbao-snapshot-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let mut engine = Engine::new(config());
    engine.enable_journal(1);
    let mut ids = Vec::new();
    let mut snapshot = None;
    let mut now = 1_000_000;
    let mut user = 1;
    for round in 0..400u64 {
        if let Some(id) = create(&mut engine, now, 1 + (round % 9) as u32) {
            ids.push(id);
        }
        for id in ids.iter().rev().take(3) {
            if engine.grab(now, *id, user).0 == Status::Ok {
                engine.open(now, *id, user);
            }
            user += 1;
        }
        now += 37;
        engine.tick(now, usize::MAX);
        if round == 250 {
            let (records, generations) = engine.image();
            snapshot = Some((engine.journal_last_seq(), records, generations));
        }
    }
    let mut log = Vec::new();
    engine.take_journal(&mut log);
    assert!(log.len() > 1000, "a log worth snapshotting: {}", log.len());
    let expected = state(&mut engine, now, &ids);

    write_segments(&dir, &log, 200);
    let (covers, records, generations) = snapshot.unwrap();
    std::fs::write(snapshot_path(&dir, covers), encode(0, covers, &generations, &records)).unwrap();

    let mut recovered = Engine::new(config());
    let found = recover(&mut recovered, &dir).unwrap();
    assert_eq!(found.snapshot_covers, covers);
    assert_eq!(found.records, log.len() as u64 - covers, "only the log after the snapshot is replayed");
    assert_eq!(state(&mut recovered, now, &ids), expected);

    // Segments wholly covered by the snapshot are not needed.
    let segments = list_segments(&dir).unwrap();
    for pair in segments.windows(2) {
        if pair[1].0 <= covers + 1 {
            std::fs::remove_file(&pair[0].1).unwrap();
        }
    }
    assert!(list_segments(&dir).unwrap().len() < segments.len(), "some segments were covered");
    let mut recovered = Engine::new(config());
    recover(&mut recovered, &dir).unwrap();
    assert_eq!(state(&mut recovered, now, &ids), expected);
    // New envelopes after recovery do not reuse an id seen before.
    recovered.enable_journal(log.len() as u64 + 1);
    for _ in 0..50 {
        if let Some(id) = create(&mut recovered, now, 2) {
            assert!(!ids.contains(&id), "id {id} handed out twice");
        }
    }

    // A damaged snapshot stops recovery and names the file.
    let path = snapshot_path(&dir, covers);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let error = recover(&mut Engine::new(config()), &dir).unwrap_err().to_string();
    assert!(error.contains(&path.display().to_string()), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
