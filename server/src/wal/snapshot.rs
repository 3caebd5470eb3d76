//! Snapshots: a shard's whole state as of one log record, so that recovery
//! reads the snapshot and only the log after it, and older segments can go.
//!
//! ```text
//! header (64 bytes)
//!   0  magic "HBSNAP01"          8  shard u16, reserved u16, reserved u32
//!  16  covers: last log record   24  records in the body
//!  32  slots (generations)       40  body crc32c, reserved u32
//!  48  reserved (12 bytes)       60  header crc32c (of bytes 0..60)
//! body
//!   slots x u32   generation of every slot ever used (so no id repeats)
//!   records x 64  the engine's image: CREATE, OPENs, EXPIRE per envelope,
//!                 numbered from 1, in the log's record format
//! ```
//!
//! A snapshot is written to a temporary name, synced, renamed into place and
//! the directory synced; only then are the segments it covers removed. A
//! crash at any point leaves either the old snapshot and the full log, or the
//! new snapshot and what it does not cover.

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::DmaFile;
use zerocopy::IntoBytes;

use super::record::{Record, RECORD_LEN};

const MAGIC: &[u8; 8] = b"HBSNAP01";
const HEADER_LEN: usize = 64;
/// A snapshot being written is synced every this many bytes.
const SYNC_EVERY_BYTES: usize = 4 << 20;
/// Most slots a snapshot may list (the slab's limit).
const SLOTS_MAX: u64 = crate::engine::SLOTS_MAX;

/// A snapshot read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The shard it belongs to.
    pub shard: u16,
    /// The last log record it covers.
    pub covers: u64,
    /// Slot generations.
    pub generations: Vec<u32>,
    /// The engine image.
    pub records: Vec<Record>,
}

/// Why a snapshot cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot, or its header is damaged.
    #[error("bad snapshot header")]
    Header,
    /// The body does not match its checksum or length.
    #[error("snapshot body damaged or truncated")]
    Body,
    /// A record of the image is invalid.
    #[error("snapshot record {index} is invalid")]
    Record { index: u64 },
}

/// The path of the snapshot covering the log up to `covers`.
pub fn snapshot_path(dir: &Path, covers: u64) -> PathBuf {
    dir.join(format!("snapshot-{covers:020}.snap"))
}

/// Snapshots in `dir` (renamed into place), by what they cover, in order.
pub fn list_snapshots(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(number) = name.strip_prefix("snapshot-").and_then(|n| n.strip_suffix(".snap")) else {
            continue;
        };
        if let Ok(covers) = number.parse::<u64>() {
            found.push((covers, path));
        }
    }
    found.sort();
    Ok(found)
}

// Generations are written as the machine holds them; the format is little
// endian.
#[cfg(not(target_endian = "little"))]
compile_error!("snapshots are written in memory order, which must be little endian");

/// The header for a body of `generations` and `records`.
fn header(shard: u16, covers: u64, generations: &[u32], records: &[Record]) -> [u8; HEADER_LEN] {
    let body_crc = crc32c::crc32c_append(crc32c::crc32c(generations.as_bytes()), records.as_bytes());
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(MAGIC);
    header[8..10].copy_from_slice(&shard.to_le_bytes());
    header[16..24].copy_from_slice(&covers.to_le_bytes());
    header[24..32].copy_from_slice(&(records.len() as u64).to_le_bytes());
    header[32..40].copy_from_slice(&(generations.len() as u64).to_le_bytes());
    header[40..44].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[..60]);
    header[60..64].copy_from_slice(&header_crc.to_le_bytes());
    header
}

/// Encodes a snapshot into one buffer (tests and tools; the server writes the
/// same bytes piece by piece with [`write`]).
pub fn encode(shard: u16, covers: u64, generations: &[u32], records: &[Record]) -> Vec<u8> {
    let mut bytes = header(shard, covers, generations, records).to_vec();
    bytes.extend_from_slice(generations.as_bytes());
    bytes.extend_from_slice(records.as_bytes());
    bytes
}

/// Decodes and checks a snapshot. Bytes after the body must be zero (the
/// padding of the last direct-I/O block).
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let header = bytes.get(..HEADER_LEN).ok_or(SnapshotError::Header)?;
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    if &header[0..8] != MAGIC || u32_at(60) != crc32c::crc32c(&header[..60]) {
        return Err(SnapshotError::Header);
    }
    let (records, slots) = (u64_at(24), u64_at(32));
    // Lengths from the file are checked against the file before anything is
    // allocated for them.
    if slots > SLOTS_MAX || records > (bytes.len() / RECORD_LEN) as u64 {
        return Err(SnapshotError::Header);
    }
    let body_len = slots as usize * 4 + records as usize * RECORD_LEN;
    let body = bytes.get(HEADER_LEN..HEADER_LEN + body_len).ok_or(SnapshotError::Body)?;
    if crc32c::crc32c(body) != u32_at(40) || bytes[HEADER_LEN + body_len..].iter().any(|b| *b != 0) {
        return Err(SnapshotError::Body);
    }
    let (gens, recs) = body.split_at(slots as usize * 4);
    let generations =
        gens.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    let mut image = Vec::with_capacity(records as usize);
    for (index, chunk) in recs.chunks_exact(RECORD_LEN).enumerate() {
        image.push(Record::read(chunk).map_err(|_| SnapshotError::Record { index: index as u64 })?);
    }
    let shard = u16::from_le_bytes([header[8], header[9]]);
    Ok(Snapshot { shard, covers: u64_at(16), generations, records: image })
}

/// Writes the snapshot of `generations` and `records` covering `covers`:
/// temporary file, direct I/O in 1 MiB pieces copied straight from the image
/// (the shard runs between pieces), sync, rename, directory sync. Returns the
/// bytes written. A write that fails removes its temporary file: left
/// behind, a part-written snapshot would hold the very disk space whose
/// lack failed it.
pub async fn write(
    dir: &Path,
    shard: u16,
    covers: u64,
    generations: &[u32],
    records: &[Record],
) -> io::Result<usize> {
    let path = snapshot_path(dir, covers);
    let temporary = temporary_path(&path);
    let total = match write_temporary(&temporary, shard, covers, generations, records).await {
        Ok(total) => total,
        Err(e) => {
            let temporary = temporary.clone();
            let _ = glommio::executor().spawn_blocking(move || std::fs::remove_file(temporary)).await;
            return Err(e);
        }
    };
    // Rename and directory sync are blocking calls: off the shard's thread.
    // A rename that fails leaves no full-size temporary file behind either.
    let dir = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || {
            if let Err(e) = std::fs::rename(&temporary, &path) {
                let _ = std::fs::remove_file(&temporary);
                return Err(e);
            }
            std::fs::File::open(&dir)?.sync_all()
        })
        .await?;
    Ok(total)
}

/// Where the snapshot for `path` is written before its rename.
fn temporary_path(path: &Path) -> PathBuf {
    path.with_extension("snap.tmp")
}

/// Removes the temporary files of snapshots that a crash cut short (a
/// write that failed removes its own). Blocking: for recovery, before the
/// shard serves. Returns how many there were.
pub fn remove_temporaries(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("snapshot-") && name.ends_with(".snap.tmp") {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The body of [`write`]: the temporary file, written and synced.
async fn write_temporary(
    temporary: &Path,
    shard: u16,
    covers: u64,
    generations: &[u32],
    records: &[Record],
) -> io::Result<usize> {
    let err = |e: glommio::GlommioError<()>| io::Error::other(e.to_string());
    let header = header(shard, covers, generations, records);
    let parts: [&[u8]; 3] = [&header, generations.as_bytes(), records.as_bytes()];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let file = DmaFile::create(temporary).await.map_err(err)?;
    let block = file.alignment() as usize;
    let chunk = 1 << 20;
    let (mut part, mut in_part) = (0, 0);
    let mut at = 0;
    while at < total {
        let len = (total - at).min(chunk);
        let padded = len.div_ceil(block) * block;
        let mut buffer = file.alloc_dma_buffer(padded);
        let target = buffer.as_bytes_mut();
        let mut filled = 0;
        while filled < len {
            let source = &parts[part][in_part..];
            let n = source.len().min(len - filled);
            target[filled..filled + n].copy_from_slice(&source[..n]);
            filled += n;
            in_part += n;
            if in_part == parts[part].len() {
                part += 1;
                in_part = 0;
            }
        }
        target[len..].fill(0);
        let written = file.write_at(buffer, at as u64).await.map_err(err)?;
        if written != padded {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short snapshot write"));
        }
        at += len;
        // Sync as it goes: one big flush at the end would hold the disk for a
        // second and every log sync (every acknowledgement) behind it.
        if at % SYNC_EVERY_BYTES < chunk {
            file.fdatasync().await.map_err(err)?;
        }
        glommio::yield_if_needed().await;
    }
    file.fdatasync().await.map_err(err)?;
    file.close().await.map_err(err)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u32>, Vec<Record>) {
        let records = vec![Record::create(1, 1, 5, 100, 2, 0, 10, 20), Record::open(2, 1, 9, 40, 1)];
        (vec![1, 3, 0, 7], records)
    }

    #[test]
    fn a_crash_cut_snapshot_file_is_removed_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("hongbao-snapshot-tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cut = temporary_path(&snapshot_path(&dir, 40));
        std::fs::write(&cut, b"part of a snapshot").unwrap();
        let kept = [snapshot_path(&dir, 20), dir.join("00000000000000000001.log"), dir.join("notes.tmp")];
        for path in &kept {
            std::fs::write(path, b"x").unwrap();
        }
        assert_eq!(remove_temporaries(&dir).unwrap(), 1);
        assert!(!cut.exists());
        assert!(kept.iter().all(|p| p.exists()), "only a snapshot's temporary file goes");
        assert_eq!(remove_temporaries(&dir).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snapshots_round_trip_with_padding() {
        let (generations, records) = sample();
        let mut bytes = encode(4, 77, &generations, &records);
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        let snapshot = decode(&bytes).unwrap();
        assert_eq!(snapshot, Snapshot { shard: 4, covers: 77, generations, records });
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let (generations, records) = sample();
        let bytes = encode(4, 77, &generations, &records);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            assert!(decode(&damaged).is_err(), "byte {i}");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err(), "truncated");
        assert!(decode(&[]).is_err());
    }
}
