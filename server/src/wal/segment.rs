//! Log segments on disk: naming, listing, reading back at start-up, and the
//! append-only writer that puts records down with direct I/O on io_uring.
//!
//! A shard's log lives in `DATA_DIR/shard-N/` as files named by the sequence
//! number of their first record, `wal-00000000000000000001.log`. Each start
//! begins a new segment after the last good record, so a torn tail left by a
//! crash stays behind in the old segment, where every later scan cuts it off
//! again; a segment also ends when it reaches [`SEGMENT_BYTES_MAX`].
//!
//! Writes are O_DIRECT, so they are whole aligned blocks: the writer keeps the
//! last partly filled block in memory and writes it again, extended, with the
//! next batch. Rewriting those bytes with the same contents means a torn
//! rewrite cannot damage records that were already durable.

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::DmaFile;
use zerocopy::IntoBytes;

use super::record::{Record, RECORD_LEN};

/// A segment ends once it holds this many bytes.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;

/// The directory of shard `shard`'s log.
pub fn shard_dir(data_dir: &Path, shard: u16) -> PathBuf {
    data_dir.join(format!("shard-{shard}"))
}

/// The path of the segment whose first record is `first_seq`.
pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("wal-{first_seq:020}.log"))
}

/// Every segment in `dir` with its first sequence number, in order.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(number) = name.strip_prefix("wal-").and_then(|n| n.strip_suffix(".log")) else { continue };
        match number.parse::<u64>() {
            Ok(first_seq) if (1..=super::record::SEQ_MAX).contains(&first_seq) => {
                segments.push((first_seq, path))
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a segment name", path.display()),
                ))
            }
        }
    }
    segments.sort();
    Ok(segments)
}

/// Makes a directory entry durable (a new segment must survive a crash).
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Appends records to the current segment, one aligned write and one
/// `fdatasync` per batch.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    file: DmaFile,
    /// Record bytes in the current segment.
    len: u64,
    /// The bytes of the last, partly filled block.
    tail: Vec<u8>,
    /// Sequence number of the next record.
    next_seq: u64,
}

impl SegmentWriter {
    /// Starts a new segment in `dir` whose first record will be `next_seq`.
    pub async fn create(dir: &Path, next_seq: u64) -> io::Result<SegmentWriter> {
        let path = segment_path(dir, next_seq);
        let file =
            DmaFile::create(&path).await.map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        // The directory sync is a blocking call: off the shard's thread.
        let owned = dir.to_path_buf();
        glommio::executor().spawn_blocking(move || sync_dir(&owned)).await?;
        Ok(SegmentWriter { dir: dir.to_path_buf(), file, len: 0, tail: Vec::new(), next_seq })
    }

    /// The sequence number the next record must have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes `records` (which must continue the sequence) and makes them
    /// durable. On error nothing may be acknowledged: the caller stops taking
    /// changes. A full segment is closed and the next one started here,
    /// before the write, never after the sync: records already durable
    /// are never reported failed because the next file could not be made.
    pub async fn append(&mut self, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if self.len >= SEGMENT_BYTES_MAX {
            let next = SegmentWriter::create(&self.dir, self.next_seq).await?;
            let full = std::mem::replace(self, next);
            // Every record in it is durable already: a failed close loses
            // nothing and is not the next write's failure.
            let _ = full.file.close().await;
        }
        for (i, record) in records.iter().enumerate() {
            // Checked before the write, as the scan checks after the read.
            record.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            if record.seq.get() != self.next_seq + i as u64 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "records out of sequence"));
            }
        }
        let block = self.file.alignment() as usize;
        let start = self.len - self.tail.len() as u64;
        let data_len = self.tail.len() + records.len() * RECORD_LEN;
        let buffer_len = data_len.div_ceil(block) * block;
        let mut buffer = self.file.alloc_dma_buffer(buffer_len);
        let bytes = buffer.as_bytes_mut();
        bytes[..self.tail.len()].copy_from_slice(&self.tail);
        let mut at = self.tail.len();
        for record in records {
            bytes[at..at + RECORD_LEN].copy_from_slice(record.as_bytes());
            at += RECORD_LEN;
        }
        bytes[at..].fill(0);
        let kept = data_len % block;
        let new_tail = bytes[data_len - kept..data_len].to_vec();
        let written = self.file.write_at(buffer, start).await.map_err(|e| io::Error::other(e.to_string()))?;
        if written != buffer_len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {written} of {buffer_len}"),
            ));
        }
        self.file.fdatasync().await.map_err(|e| io::Error::other(e.to_string()))?;
        self.len += (records.len() * RECORD_LEN) as u64;
        self.tail = new_tail;
        self.next_seq += records.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment that reaches its size is closed when the next records come,
    /// before they are written: the records that filled it were made durable
    /// and reported so, whatever happens to the next file.
    #[test]
    fn a_full_segment_gives_way_at_the_next_write() {
        let dir = std::env::temp_dir().join(format!("hongbao-segment-rotation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let inside = dir.clone();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let dir = inside;
                let record = |seq: u64| Record::open(seq, 1, seq, 1, 1);
                let mut writer = SegmentWriter::create(&dir, 1).await.unwrap();
                let per_segment = SEGMENT_BYTES_MAX / RECORD_LEN as u64;
                let batch = 8_192;
                let mut seq = 1;
                while seq <= per_segment {
                    let records: Vec<Record> = (seq..seq + batch).map(record).collect();
                    writer.append(&records).await.unwrap();
                    seq += batch;
                }
                assert_eq!(seq, per_segment + 1, "the batches fill the segment exactly");
                let firsts =
                    |dir: &Path| list_segments(dir).unwrap().into_iter().map(|s| s.0).collect::<Vec<_>>();
                assert_eq!(firsts(&dir), [1], "full, and still the only segment: nothing else was written");
                writer.append(&[record(seq)]).await.unwrap();
                assert_eq!(firsts(&dir), [1, seq], "the next record starts the next segment");
                assert_eq!(writer.next_seq(), seq + 1);
                let segments = list_segments(&dir).unwrap();
                let first = std::fs::read(&segments[0].1).unwrap();
                assert!(first.len() as u64 >= SEGMENT_BYTES_MAX);
                assert_eq!(&first[first.len() - RECORD_LEN..], record(per_segment).as_bytes());
                let next = std::fs::read(&segments[1].1).unwrap();
                assert_eq!(&next[..RECORD_LEN], record(seq).as_bytes());
            })
            .unwrap()
            .join()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
