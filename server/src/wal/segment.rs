//! Log segments on disk: naming, listing, reading back at start-up, and the
//! append-only writer that puts records down with direct I/O on io_uring.
//!
//! A shard's log lives in `DATA_DIR/shard-N/` as files named by the sequence
//! number of their first record, `wal-00000000000000000001.v2.log`. Each start
//! begins a new segment after the last good record, so a torn tail left by a
//! crash stays behind in the old segment, where every later scan cuts it off
//! again; a segment also ends when it reaches [`SEGMENT_BYTES_MAX`].
//!
//! Writes are O_DIRECT, so they are whole aligned blocks: the writer keeps the
//! last partly filled block in memory and writes it again, extended, with the
//! next batch. Rewriting those bytes with the same contents means a torn
//! rewrite cannot damage records that were already durable.
//!
//! One write carries at most [`WRITE_RECORDS_MAX`] records; a larger batch
//! is written in pieces, each with its own `fdatasync`, and each write marks
//! its first record. A power cut can keep a later block of a write and lose
//! an earlier one, and the scan tells such a torn last write from corruption
//! by the marks after the hole and, as a second guard, how far past it valid
//! records reach (see [`super::scan`]).
//!
//! The `.v2` in the name is for older servers, not this one: they read
//! record version 1 only, would take a log of version 2 records for one torn
//! at its first record, and cut it away. Such a server refuses a name it
//! cannot parse (`not a segment name`) and stops instead. Segments of
//! version 1 records, named `wal-N.log`, are still read.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use glommio::io::DmaFile;
use zerocopy::IntoBytes;

use super::record::{Record, RECORD_LEN};

/// A segment ends once it holds this many bytes.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;
/// Most records one write (and its `fdatasync`) carries: 1 MiB. Group commit
/// batches are far smaller (a few thousand records), so this rarely splits one.
pub const WRITE_RECORDS_MAX: usize = 16_384;
/// Largest block (the file's direct-I/O alignment) a writer accepts. A write
/// starts at the beginning of the block holding the old tail, so this bounds
/// the old bytes a write rewrites.
pub const BLOCK_BYTES_MAX: usize = 64 << 10;

const _: () = assert!(WRITE_RECORDS_MAX * RECORD_LEN == 1 << 20);
/// The largest segment file recovery reads: larger is not a log, and is
/// refused before it is read into memory. This server's segments take writes
/// until they hold [`SEGMENT_BYTES_MAX`], and the last adds at most one write
/// of [`WRITE_RECORDS_MAX`]. Earlier versions wrote a whole group commit as
/// one write, without a bound; the room left for one as large as a segment
/// (64 MiB, a million records in one group) is a judgement, not a proof.
pub const SEGMENT_FILE_BYTES_MAX: u64 = 2 * SEGMENT_BYTES_MAX;

/// The directory of shard `shard`'s log.
pub fn shard_dir(data_dir: &Path, shard: u16) -> PathBuf {
    data_dir.join(format!("shard-{shard}"))
}

/// The path of the segment whose first record is `first_seq`.
pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("wal-{first_seq:020}{SEGMENT_SUFFIX}"))
}

/// The end of a segment's name: records of version 2 (see the module doc).
const SEGMENT_SUFFIX: &str = ".v2.log";
/// The end of the name of a segment an older server wrote (version 1).
const SEGMENT_SUFFIX_V1: &str = ".log";

/// Every segment in `dir` with its first sequence number, in order.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(rest) = name.strip_prefix("wal-") else { continue };
        let Some(number) = rest.strip_suffix(SEGMENT_SUFFIX).or_else(|| rest.strip_suffix(SEGMENT_SUFFIX_V1))
        else {
            continue;
        };
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

/// How long opening a new segment waits out a process out of descriptors.
const OPEN_RETRY_MAX: Duration = Duration::from_secs(1);
/// How often it tries meanwhile.
const OPEN_RETRY_EVERY: Duration = Duration::from_millis(1);

/// EMFILE or ENFILE: the descriptor table is full, for now.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The same for glommio's errors (whose conversion to `io::Error` loses the
/// error number).
fn out_of_descriptors<T>(error: &glommio::GlommioError<T>) -> bool {
    match error {
        glommio::GlommioError::IoError(source) | glommio::GlommioError::EnhancedIoError { source, .. } => {
            is_out_of_descriptors(source)
        }
        _ => false,
    }
}

/// Makes a directory entry durable (a new segment must survive a crash).
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Appends records to the current segment, one aligned write and one
/// `fdatasync` per batch of up to [`WRITE_RECORDS_MAX`] records.
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
        // Out of descriptors is waited out a moment: a burst of connections
        // takes some for the instant before they are refused, and a log that
        // fails on it refuses every change until restarted.
        let deadline = Instant::now() + OPEN_RETRY_MAX;
        let file = loop {
            match DmaFile::create(&path).await {
                Ok(file) => break file,
                Err(e) if out_of_descriptors(&e) && Instant::now() < deadline => {
                    glommio::timer::sleep(OPEN_RETRY_EVERY).await;
                }
                Err(e) => return Err(io::Error::other(format!("{}: {e}", path.display()))),
            }
        };
        let block = file.alignment() as usize;
        if block > BLOCK_BYTES_MAX || !block.is_multiple_of(RECORD_LEN) {
            // The scan's rule for torn writes assumes both.
            let _ = file.close().await;
            let why = format!(
                "direct-I/O block of {block} bytes, not a multiple of {RECORD_LEN} up to {BLOCK_BYTES_MAX}"
            );
            return Err(io::Error::new(io::ErrorKind::Unsupported, format!("{}: {why}", path.display())));
        }
        // The directory sync is a blocking call: off the shard's thread.
        loop {
            let owned = dir.to_path_buf();
            match glommio::executor().spawn_blocking(move || sync_dir(&owned)).await {
                Ok(()) => break,
                Err(e) if is_out_of_descriptors(&e) && Instant::now() < deadline => {
                    glommio::timer::sleep(OPEN_RETRY_EVERY).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(SegmentWriter { dir: dir.to_path_buf(), file, len: 0, tail: Vec::new(), next_seq })
    }

    /// The sequence number the next record must have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes `records` (which must continue the sequence) and makes them
    /// durable, in writes of at most [`WRITE_RECORDS_MAX`] records. On error
    /// nothing may be acknowledged (the pieces before it may be durable, as
    /// after a crash before the answer): the caller stops taking changes.
    pub async fn append(&mut self, records: &[Record]) -> io::Result<()> {
        for (i, record) in records.iter().enumerate() {
            // Checked before the first write, as the scan checks after the
            // read: a batch with a bad record writes nothing.
            record.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            if record.seq.get() != self.next_seq + i as u64 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "records out of sequence"));
            }
        }
        for piece in records.chunks(WRITE_RECORDS_MAX) {
            self.write(piece).await?;
        }
        Ok(())
    }

    /// One aligned write of `records` (checked, at most [`WRITE_RECORDS_MAX`])
    /// and one `fdatasync`. A full segment is closed and the next one started
    /// here, before the write, never after the sync: records already durable
    /// are never reported failed because the next file could not be made.
    async fn write(&mut self, records: &[Record]) -> io::Result<()> {
        assert!(!records.is_empty() && records.len() <= WRITE_RECORDS_MAX);
        if self.len >= SEGMENT_BYTES_MAX {
            let next = SegmentWriter::create(&self.dir, self.next_seq).await?;
            let full = std::mem::replace(self, next);
            // Every record in it is durable already: a failed close loses
            // nothing and is not the next write's failure.
            let _ = full.file.close().await;
        }
        let block = self.file.alignment() as usize;
        let start = self.len - self.tail.len() as u64;
        let data_len = self.tail.len() + records.len() * RECORD_LEN;
        let buffer_len = data_len.div_ceil(block) * block;
        // A hole this write leaves lies at or after `start`, so its valid
        // records end at most `data_len` past it: the scan must allow that.
        assert!(data_len <= super::scan::TORN_WRITE_BYTES_MAX);
        let mut buffer = self.file.alloc_dma_buffer(buffer_len);
        let bytes = buffer.as_bytes_mut();
        bytes[..self.tail.len()].copy_from_slice(&self.tail);
        let mut at = self.tail.len();
        // The first record of the write says so: a hole after it with no
        // later write start can only be this write, torn.
        let (first, rest) = records.split_first().expect("checked above");
        bytes[at..at + RECORD_LEN].copy_from_slice(first.marked_write_start().as_bytes());
        at += RECORD_LEN;
        for record in rest {
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

    #[test]
    fn segments_of_both_versions_are_listed_and_an_older_server_refuses_the_new_names() {
        let dir = std::env::temp_dir().join(format!("hongbao-segment-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let old = dir.join(format!("wal-{:020}.log", 1));
        std::fs::write(&old, b"").unwrap();
        std::fs::write(segment_path(&dir, 7), b"").unwrap();
        std::fs::write(dir.join("snapshot-00000000000000000003.snap"), b"").unwrap();
        assert_eq!(list_segments(&dir).unwrap(), [(1, old), (7, segment_path(&dir, 7))]);
        // What an older server does with the new name: "wal-" and ".log"
        // off, the rest must be a number. It is not, so it stops at start-up
        // ("not a segment name") instead of reading version 2 records as
        // damage and cutting them away.
        let name = segment_path(&dir, 7).file_name().unwrap().to_str().unwrap().to_string();
        let number = name.strip_prefix("wal-").and_then(|n| n.strip_suffix(".log")).unwrap();
        assert!(number.parse::<u64>().is_err(), "{name}");
        std::fs::write(dir.join("wal-seven.v2.log"), b"").unwrap();
        assert!(list_segments(&dir).is_err(), "a name that is no number is refused here too");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Runs `test` on a glommio executor with a fresh directory, removed after.
    fn in_executor<F, Fut>(name: &str, test: F)
    where
        F: FnOnce(PathBuf) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let dir = std::env::temp_dir().join(format!("hongbao-segment-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let inside = dir.clone();
        glommio::LocalExecutorBuilder::default().spawn(move || test(inside)).unwrap().join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A segment that reaches its size is closed when the next records come,
    /// before they are written: the records that filled it were made durable
    /// and reported so, whatever happens to the next file.
    #[test]
    fn a_full_segment_gives_way_at_the_next_write() {
        in_executor("rotation", |dir| async move {
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
            assert_eq!(&next[..RECORD_LEN], record(seq).marked_write_start().as_bytes());
        });
    }

    /// A batch above the write bound goes down in pieces of at most
    /// WRITE_RECORDS_MAX records, each its own write, and every record of it
    /// reads back in place.
    #[test]
    fn a_batch_above_the_write_bound_is_written_in_pieces() {
        in_executor("pieces", |dir| async move {
            let record = |seq: u64| Record::open(seq, 1, seq, 1, 1);
            let mut writer = SegmentWriter::create(&dir, 1).await.unwrap();
            // A partly filled block first, so every piece rewrites a tail.
            writer.append(&(1..=3).map(record).collect::<Vec<_>>()).await.unwrap();
            let batch = 2 * WRITE_RECORDS_MAX as u64 + 5;
            writer.append(&(4..4 + batch).map(record).collect::<Vec<_>>()).await.unwrap();
            assert_eq!(writer.next_seq(), 4 + batch);
            let bytes = std::fs::read(segment_path(&dir, 1)).unwrap();
            let scanned = super::super::scan::scan(&bytes, 1).unwrap();
            assert_eq!(scanned.next_seq, 4 + batch);
            // Each write marks its first record: the first append's, then
            // two full pieces and one of 5 records.
            let max = WRITE_RECORDS_MAX as u64;
            let starts: Vec<u64> =
                scanned.records.iter().filter(|r| r.starts_write()).map(|r| r.seq.get()).collect();
            assert_eq!(starts, [1, 4, 4 + max, 4 + 2 * max]);
            for (r, seq) in scanned.records.iter().zip(1..) {
                let written =
                    if starts.contains(&seq) { record(seq).marked_write_start() } else { record(seq) };
                assert_eq!(*r, written, "record {seq}");
            }
        });
    }
}
