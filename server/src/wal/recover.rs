//! Start-up: load the newest snapshot, then read the segments after it, in
//! order, and replay them.
//!
//! A torn tail or torn last write is cut (it was never acknowledged; the
//! stale records a torn write leaves after its hole stay in the old segment,
//! and every start cuts them again); anything else that is wrong (a corrupt
//! record in the middle, a gap between segments, a record that contradicts
//! the state) stops start-up with an error that names the file and the byte
//! offset. Nothing is ever skipped silently.
//!
//! Before the shard serves, every segment it read is synced. A crash between
//! a write and its `fdatasync` leaves records that read back fine (from the
//! page cache or the device's cache) but may not survive a power cut; the
//! shard counts everything it recovered as durable and answers a retried
//! OPEN from it at once, so it must be durable in fact. A directory this
//! start made is synced into its parent for the same reason.

use std::path::{Path, PathBuf};

use super::record::SEQ_MAX;

use super::record::RECORD_LEN;
use super::scan::scan;
use super::segment::{list_segments, SEGMENT_FILE_BYTES_MAX};
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
    /// Bytes cut off as torn tails, to the last non-zero one (a torn write's
    /// stale records after its hole count).
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
    create_dir_durably(dir).map_err(io(dir))?;
    let mut found = Recovered { snapshot_covers: 0, records: 0, segments: 0, torn_bytes: 0, next_seq: 1 };
    // The newest snapshot. One that was renamed into place and fails its
    // checks is corruption, not a crash, and stops start-up.
    if let Some((covers, path)) = list_snapshots(dir).map_err(io(dir))?.pop() {
        if covers >= SEQ_MAX {
            let what = format!("covers record {covers}, past the largest sequence number ({SEQ_MAX})");
            return Err(RecoverError::Bad { path, what });
        }
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
        // Wholly covered by the snapshot: the next segment starts within it
        // (or right after). Judged against the snapshot, not against how far
        // reading has come: a segment that overlaps the one read before it
        // must be read, so that its second copies are found and refused.
        if segments.get(i + 1).is_some_and(|(next, _)| *next <= found.snapshot_covers + 1) {
            continue;
        }
        found.segments += 1;
        if *first_seq > found.next_seq {
            let what =
                format!("starts at record {first_seq}, but the log before it ends at {}", found.next_seq - 1);
            return Err(RecoverError::Bad { path: path.clone(), what });
        }
        let len = std::fs::metadata(path).map_err(io(path))?.len();
        if len > SEGMENT_FILE_BYTES_MAX {
            let what = format!("{len} bytes, more than a segment can hold ({SEGMENT_FILE_BYTES_MAX})");
            return Err(RecoverError::Bad { path: path.clone(), what });
        }
        let bytes = std::fs::read(path).map_err(io(path))?;
        let scanned = scan(&bytes, *first_seq)
            .map_err(|e| RecoverError::Bad { path: path.clone(), what: e.to_string() })?;
        for (i, record) in scanned.records.iter().enumerate() {
            let seq = record.seq.get();
            if seq <= found.snapshot_covers {
                continue; // In the snapshot already.
            }
            if seq < found.next_seq {
                // A second copy of records an earlier segment already gave:
                // which one was acknowledged cannot be known.
                let what = format!(
                    "offset {}: record {seq} is in an earlier segment too (it ends at {})",
                    i * RECORD_LEN,
                    found.next_seq - 1
                );
                return Err(RecoverError::Bad { path: path.clone(), what });
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
        std::fs::File::open(path).and_then(|file| file.sync_data()).map_err(io(path))?;
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

/// Creates `dir` and any missing parents, and syncs each new entry into its
/// parent: a directory entry is durable only once its parent is synced.
fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        missing.push(path);
        at = path.parent();
    }
    std::fs::create_dir_all(dir)?;
    for path in missing {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
