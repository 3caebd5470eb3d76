//! Recovery refuses logs it did not write, rather than guessing: two segments
//! holding the same sequence numbers, and a snapshot that names a record past
//! the largest sequence number. And the directories a first start makes are
//! there (and synced) for the next.

use std::path::{Path, PathBuf};

use hongbao_protocol::body::CreateRequest;
use hongbao_protocol::Status;
use hongbao_server::engine::{Engine, EngineConfig};
use hongbao_server::wal::record::SEQ_MAX;
use hongbao_server::wal::recover::recover;
use hongbao_server::wal::segment::segment_path;
use hongbao_server::wal::snapshot::{encode, snapshot_path};
use hongbao_server::wal::Record;
use zerocopy::little_endian::{U32, U64};
use zerocopy::IntoBytes;

fn config() -> EngineConfig {
    EngineConfig { shard_id: 0, retention_secs: 1, seed: 5, ..EngineConfig::default() }
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hongbao-recovery-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A log of one envelope of `count` shares, each opened by its own user.
fn log(count: u32) -> Vec<Record> {
    let mut engine = Engine::new(config());
    engine.enable_journal(1);
    let req = CreateRequest {
        sender: U64::new(1),
        total_cents: U64::new(u64::from(count) * 100),
        count: U32::new(count),
        kind: 0,
        reserved0: [0; 3],
        expires_in_secs: U32::new(3600),
        reserved1: U32::new(0),
    };
    let id = engine.create(1_000, &req).unwrap().envelope.get();
    for user in 1..=u64::from(count) {
        assert_eq!(engine.grab(1_000, id, user).0, Status::Ok);
        engine.open(1_000, id, user);
    }
    let mut records = Vec::new();
    engine.take_journal(&mut records);
    assert_eq!(records.len(), 1 + count as usize);
    records
}

fn write_segment(dir: &Path, records: &[Record]) {
    let bytes: Vec<u8> = records.iter().flat_map(|r| r.as_bytes().to_vec()).collect();
    std::fs::write(segment_path(dir, records[0].seq.get()), bytes).unwrap();
}

#[test]
fn two_segments_with_the_same_records_are_refused() {
    let dir = fresh_dir("overlap");
    std::fs::create_dir_all(&dir).unwrap();
    let records = log(5);
    write_segment(&dir, &records[..4]);
    // A second segment that starts inside the first: records 3 and 4 twice.
    write_segment(&dir, &records[2..]);
    let error = recover(&mut Engine::new(config()), &dir).unwrap_err().to_string();
    assert!(error.contains("record 3 is in an earlier segment too"), "{error}");
    // Also when the copies sit in the middle of the log, with a segment after
    // them that goes on where the first one ended.
    let middle = fresh_dir("overlap-middle");
    std::fs::create_dir_all(&middle).unwrap();
    write_segment(&middle, &records[..4]);
    write_segment(&middle, &records[2..4]);
    write_segment(&middle, &records[4..]);
    let error = recover(&mut Engine::new(config()), &middle).unwrap_err().to_string();
    assert!(error.contains("record 3 is in an earlier segment too"), "{error}");
    std::fs::remove_dir_all(&middle).unwrap();
    // Where a snapshot covers the overlap, the copies are simply not read.
    let mut engine = Engine::new(config());
    for record in &records[..4] {
        engine.replay(record).unwrap();
    }
    engine.finish_replay();
    let (image, generations) = engine.image();
    std::fs::write(snapshot_path(&dir, 4), encode(0, 4, &generations, &image)).unwrap();
    let found = recover(&mut Engine::new(config()), &dir).unwrap();
    assert_eq!((found.snapshot_covers, found.records, found.next_seq), (4, 2, 7));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A power cut during the last write of records 11-101 (at 4096-byte blocks)
/// kept its second block but lost its first: recovery cuts at the hole, and
/// after the next start's segment (from record 11) it reads both again,
/// cutting the old one at the same place, past its stale records 65-101.
#[test]
fn a_torn_last_write_is_cut_at_the_hole_again_and_again() {
    let dir = fresh_dir("torn-write");
    std::fs::create_dir_all(&dir).unwrap();
    let records = log(100);
    let bytes: Vec<u8> = records.iter().flat_map(|r| r.as_bytes().to_vec()).collect();
    let mut torn = vec![0; 8192];
    torn[..640].copy_from_slice(&bytes[..640]);
    torn[4096..4096 + bytes.len() - 4096].copy_from_slice(&bytes[4096..]);
    std::fs::write(segment_path(&dir, 1), &torn).unwrap();
    let found = recover(&mut Engine::new(config()), &dir).unwrap();
    // Torn bytes count to the last non-zero one: the stale records' end.
    let cut = (bytes.iter().rposition(|b| *b != 0).unwrap() + 1 - 640) as u64;
    assert_eq!((found.records, found.next_seq, found.torn_bytes), (10, 11, cut));
    write_segment(&dir, &records[10..]);
    let found = recover(&mut Engine::new(config()), &dir).unwrap();
    assert_eq!((found.records, found.segments, found.next_seq, found.torn_bytes), (101, 2, 102, cut));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_snapshot_past_the_largest_sequence_number_is_refused() {
    let dir = fresh_dir("seq-max");
    std::fs::create_dir_all(&dir).unwrap();
    let engine = Engine::new(config());
    let (image, generations) = engine.image();
    for covers in [SEQ_MAX, u64::MAX] {
        let path = snapshot_path(&dir, covers);
        std::fs::write(&path, encode(0, covers, &generations, &image)).unwrap();
        let error = recover(&mut Engine::new(config()), &dir).unwrap_err().to_string();
        assert!(error.contains("past the largest sequence number"), "{error}");
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_first_start_makes_its_directories_and_reads_back_what_it_finds() {
    let top = fresh_dir("mkdir");
    let dir = top.join("data").join("shard-0");
    let found = recover(&mut Engine::new(config()), &dir).unwrap();
    assert_eq!((found.records, found.next_seq), (0, 1));
    assert!(dir.is_dir());
    write_segment(&dir, &log(3));
    let found = recover(&mut Engine::new(config()), &dir).unwrap();
    assert_eq!((found.records, found.segments, found.next_seq), (4, 1, 5));
    std::fs::remove_dir_all(&top).unwrap();
}

#[test]
fn a_segment_larger_than_any_this_server_writes_is_refused_unread() {
    use hongbao_server::wal::segment::SEGMENT_FILE_BYTES_MAX;
    let dir = fresh_dir("too-large");
    std::fs::create_dir_all(&dir).unwrap();
    let records = log(2);
    write_segment(&dir, &records);
    // Sparse: a file this long costs no disk, and recovery must not read it.
    let file = std::fs::OpenOptions::new().write(true).open(segment_path(&dir, 1)).unwrap();
    file.set_len(SEGMENT_FILE_BYTES_MAX + 1).unwrap();
    let error = recover(&mut Engine::new(config()), &dir).unwrap_err().to_string();
    assert!(error.contains("more than a segment can hold"), "{error}");
    file.set_len(SEGMENT_FILE_BYTES_MAX).unwrap();
    let found = recover(&mut Engine::new(config()), &dir).unwrap();
    assert_eq!(found.records, 3, "at the bound it is read (zeros after the records are its tail)");
    std::fs::remove_dir_all(&dir).unwrap();
}
