//! Start-up: load the newest snapshot, then read the segments after it, in
//! order, and replay them.
//!
//! A torn tail is cut (it was never acknowledged); anything else that is wrong
//! (a corrupt record in the middle, a gap between segments, a record that
//! contradicts the state) stops start-up with an error that names the file and
//! the byte offset. Nothing is ever skipped silently.

use std::path::{Path, PathBuf};

use super::record::RECORD_LEN;
use super::scan::scan;
use super::segment::list_segments;
use super::snapshot::{self, list_snapshots};
use crate::engine::Engine;

/// What recovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The log record the snapshot loaded covers (0: no snapshot).
    pub snapshot_covers: u64,
    /// Records replayed from the log after the snapshot.
    pub records: u64,
    /// Segments read.
    pub segments: usize,
    /// Bytes cut off as torn tails.
    pub torn_bytes: u64,
    /// The sequence number of the next record.
    pub next_seq: u64,
}

/// Why a shard's log cannot be recovered.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The directory or a file could not be read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A corrupt or out-of-place record.
    #[error("{path}: {what}")]
    Bad { path: PathBuf, what: String },
}

/// Replays every segment in `dir` onto `engine` (which must be empty), then
/// finishes the replay. A missing directory is an empty log.
pub fn recover(engine: &mut Engine, dir: &Path) -> Result<Recovered, RecoverError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecoverError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut found = Recovered { snapshot_covers: 0, records: 0, segments: 0, torn_bytes: 0, next_seq: 1 };
    // The newest snapshot. One that was renamed into place and fails its
    // checks is corruption, not a crash, and stops start-up.
    if let Some((covers, path)) = list_snapshots(dir).map_err(io(dir))?.pop() {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let bad = |what: String| RecoverError::Bad { path: path.clone(), what };
        let image = snapshot::decode(&bytes).map_err(|e| bad(e.to_string()))?;
        if image.covers != covers || image.shard != engine.config().shard_id {
            return Err(bad(format!("names shard {} and record {}", image.shard, image.covers)));
        }
        engine.restore(&image.records, &image.generations, covers).map_err(|e| bad(e.to_string()))?;
        found.snapshot_covers = covers;
        found.next_seq = covers + 1;
    }
    let segments = list_segments(dir).map_err(io(dir))?;
    for (i, (first_seq, path)) in segments.iter().enumerate() {
        // Wholly covered by the snapshot: the next segment starts within it.
        if segments.get(i + 1).is_some_and(|(next, _)| *next <= found.next_seq) {
            continue;
        }
        found.segments += 1;
        if *first_seq > found.next_seq {
            let what =
                format!("starts at record {first_seq}, but the log before it ends at {}", found.next_seq - 1);
            return Err(RecoverError::Bad { path: path.clone(), what });
        }
        let bytes = std::fs::read(path).map_err(io(path))?;
        let scanned = scan(&bytes, *first_seq)
            .map_err(|e| RecoverError::Bad { path: path.clone(), what: e.to_string() })?;
        for (i, record) in scanned.records.iter().enumerate() {
            if record.seq.get() < found.next_seq {
                continue; // In the snapshot already.
            }
            engine.replay(record).map_err(|e| RecoverError::Bad {
                path: path.clone(),
                what: format!("offset {}: {e}", i * RECORD_LEN),
            })?;
            found.records += 1;
        }
        found.torn_bytes +=
            bytes[scanned.valid_len..].iter().rposition(|b| *b != 0).map_or(0, |p| p as u64 + 1);
        found.next_seq = found.next_seq.max(scanned.next_seq);
    }
    // A last segment with no record (a crash right after it was made) would
    // collide with the one about to be made at the same sequence number.
    if let Some((first_seq, path)) = segments.last() {
        if *first_seq == found.next_seq {
            std::fs::remove_file(path).map_err(io(path))?;
        }
    }
    engine.finish_replay();
    Ok(found)
}
