//! Reading a log back: whole records in sequence, a torn last write cut off,
//! and corruption refused with its offset.
//!
//! A crash can leave the last write half done, and nothing in it was
//! acknowledged (an answer waits for the `fdatasync` after its write), so the
//! scan cuts it off at its first bad record. A tail with no valid record after
//! the first bad one (a partial record, a record whose checksum fails, zeros
//! where a padded block was not yet filled) is always cut.
//!
//! A bad record *followed by valid ones* is usually corruption, and recovery
//! must stop and say where, never skip it. But one write spans several blocks,
//! and only a sector is written atomically: a power cut can keep a later block
//! of the last write and lose an earlier one. The scan cuts such a hole at
//! `h` only if all of these hold, each because a torn write cannot look
//! otherwise:
//!
//! * Every record-sized chunk from `h` on is all zeros or a valid record at
//!   its own place (sequence `first_seq + offset / RECORD_LEN`). Segments are
//!   fresh files, so a lost block beyond the old end reads as zeros, and the
//!   rewritten first block's old content is the same durable records (all
//!   before `h`) then zeros. Non-zero garbage is bit rot, and a valid record
//!   out of place was never written there: both are corruption.
//! * No valid record after `h` starts a write (flag
//!   [`FLAG_WRITE_START`](super::record::FLAG_WRITE_START)), and every one of
//!   them has a version that marks write starts. Only the last write can be
//!   torn (the next one starts after the previous `fdatasync`, which is also
//!   when its answers go out), and a write's first new record is marked:
//!   after a hole in the last write comes no mark, while a hole in an earlier
//!   write (synced and acknowledged, so a device fault) is followed by the
//!   marked start of the write after it, unless the fault zeroed that mark
//!   too (then the earlier write's records after the hole are cut: the one
//!   case left, and it needs a device that loses synced sectors). Without this, writes of a few
//!   records each would let a hole be cut with hundreds of acknowledged
//!   writes after it. Version 1 records carry no marks, so a hole before one
//!   is corruption, as it always was.
//! * The last valid record after `h` ends within [`TORN_WRITE_BYTES_MAX`] of
//!   `h`: a write holds the old tail it rewrites (less than one block, and a
//!   block is at most [`BLOCK_BYTES_MAX`](super::segment::BLOCK_BYTES_MAX))
//!   and at most [`WRITE_RECORDS_MAX`](super::segment::WRITE_RECORDS_MAX) new
//!   records. A second guard, should a write's mark itself be lost.
//!
//! The cut leaves the stale records after the hole in the segment; the next
//! start begins a new segment at the cut's sequence number, and every later
//! scan, reading the same bytes, cuts at the same place. A trailing piece
//! shorter than a record is ignored, as in a torn tail.

use super::record::{Record, RecordError, RECORD_LEN};
use super::segment::{BLOCK_BYTES_MAX, WRITE_RECORDS_MAX};

/// How far past a hole a torn last write can still hold valid records: the
/// records of one write, plus the old tail it rewrites (less than a block).
pub const TORN_WRITE_BYTES_MAX: usize = WRITE_RECORDS_MAX * RECORD_LEN + BLOCK_BYTES_MAX;

/// A log read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Scanned {
    /// Every whole, valid record, in order.
    pub records: Vec<Record>,
    /// Bytes of the log that hold those records; anything after is the tail.
    pub valid_len: usize,
    /// The sequence number the next record must have.
    pub next_seq: u64,
}

/// A log that must not be recovered silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// A record that fails its checks, followed by valid records that no torn
    /// last write explains.
    #[error("corrupt record at offset {offset}: {why}")]
    Corrupt { offset: usize, why: RecordError },
    /// A valid record with the wrong sequence number.
    #[error("record at offset {offset} has sequence {found}, expected {expected}")]
    OutOfSequence { offset: usize, expected: u64, found: u64 },
}

/// Reads the records of `bytes`, whose first record must have sequence
/// `first_seq`.
pub fn scan(bytes: &[u8], first_seq: u64) -> Result<Scanned, ScanError> {
    let mut records = Vec::with_capacity(bytes.len() / RECORD_LEN);
    let mut next_seq = first_seq;
    let mut offset = 0;
    while offset + RECORD_LEN <= bytes.len() {
        let chunk = &bytes[offset..offset + RECORD_LEN];
        match Record::read(chunk) {
            Ok(record) if record.seq.get() == next_seq => {
                records.push(record);
                next_seq += 1;
                offset += RECORD_LEN;
            }
            Ok(record) => {
                return Err(ScanError::OutOfSequence { offset, expected: next_seq, found: record.seq.get() });
            }
            Err(why) => match after_bad_record(bytes, offset, first_seq) {
                After::Torn => break,
                After::Corrupt => return Err(ScanError::Corrupt { offset, why }),
            },
        }
    }
    Ok(Scanned { records, valid_len: offset, next_seq })
}

/// What a bad record and the bytes after it are.
#[derive(Debug, PartialEq, Eq)]
enum After {
    /// A torn tail or a torn last write: cut at the bad record.
    Torn,
    /// Anything else.
    Corrupt,
}

/// Judges the bad record at `hole` (on a record boundary) by the whole
/// records from there to the end, by the rules of the module doc.
fn after_bad_record(bytes: &[u8], hole: usize, first_seq: u64) -> After {
    debug_assert!(hole.is_multiple_of(RECORD_LEN) && hole + RECORD_LEN <= bytes.len());
    let mut valid_after = false;
    // A chunk no torn last write can leave: non-zero garbage, a record out
    // of place, the start of a later write, or a record beyond the reach of
    // one write.
    let mut foreign = false;
    for (i, chunk) in bytes[hole..].chunks_exact(RECORD_LEN).enumerate() {
        let offset = hole + i * RECORD_LEN;
        if chunk.iter().all(|b| *b == 0) {
            continue;
        }
        match Record::read(chunk) {
            Ok(record) => {
                valid_after = true;
                let in_place = first_seq.checked_add((offset / RECORD_LEN) as u64) == Some(record.seq.get());
                let reachable = offset + RECORD_LEN - hole <= TORN_WRITE_BYTES_MAX;
                let same_write = record.marks_writes() && !record.starts_write();
                foreign |= !(in_place && reachable && same_write);
            }
            Err(_) => foreign = true,
        }
        if valid_after && foreign {
            return After::Corrupt;
        }
    }
    // No valid record after it (a torn or unfilled tail, whatever the bytes),
    // or only what a torn last write leaves.
    After::Torn
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use zerocopy::IntoBytes;

    use super::*;

    fn history(kinds: &[u8]) -> Vec<Record> {
        kinds
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let seq = i as u64 + 1;
                match k % 3 {
                    0 => Record::create(seq, seq, 5, 100 + seq, 3, 0, seq, seq + 1000),
                    1 => Record::open(seq, seq / 2 + 1, seq + 7, 1 + seq % 50, 1 + (seq % 3) as u32),
                    _ => Record::expire(seq, seq, seq % 20, seq * 10),
                }
            })
            .collect()
    }

    fn bytes_of(records: &[Record]) -> Vec<u8> {
        records.iter().flat_map(|r| r.as_bytes().to_vec()).collect()
    }

    /// Records 1..=n of every kind.
    fn numbered(n: usize) -> Vec<Record> {
        history(&(0..n).map(|i| i as u8).collect::<Vec<_>>())
    }

    /// Writes `records` as the segment writer does at `block` bytes, in
    /// writes of `writes[i]` records: each starts at the block holding the
    /// old tail, rewrites it, and is padded with zeros to whole blocks.
    /// Returns the segment before the last write, and that write's offset
    /// and bytes.
    fn written(records: &[Record], writes: &[usize], block: usize) -> (Vec<u8>, usize, Vec<u8>) {
        let mut disk = Vec::new();
        let mut len = 0;
        for (i, &n) in writes.iter().enumerate() {
            let start = len - len % block;
            let mut write = disk[start..len].to_vec();
            write.extend(bytes_of(&as_written(&records[len / RECORD_LEN..][..n])));
            write.resize(write.len().div_ceil(block) * block, 0);
            if i + 1 == writes.len() {
                return (disk, start, write);
            }
            disk.resize(disk.len().max(start + write.len()), 0);
            disk[start..start + write.len()].copy_from_slice(&write);
            len += n * RECORD_LEN;
        }
        unreachable!("at least one write");
    }

    /// The records of one write as the writer puts them down: the first
    /// marked as the write's start.
    fn as_written(records: &[Record]) -> Vec<Record> {
        let mut written = records.to_vec();
        written[0] = written[0].marked_write_start();
        written
    }

    /// `records` as written in writes of `writes[i]` records.
    fn marked(records: &[Record], writes: &[usize]) -> Vec<Record> {
        let mut out = Vec::new();
        let mut at = 0;
        for &n in writes {
            out.extend(as_written(&records[at..at + n]));
            at += n;
        }
        out
    }

    /// The segment after a power cut during the last write: the pieces of
    /// `unit` bytes for which `lost` holds keep their old content (the old
    /// tail, or zeros past the old end of a fresh file).
    fn torn(before: &[u8], start: usize, write: &[u8], unit: usize, lost: impl Fn(usize) -> bool) -> Vec<u8> {
        let mut disk = before.to_vec();
        disk.resize(start + write.len(), 0);
        for (i, piece) in write.chunks(unit).enumerate() {
            if !lost(i) {
                disk[start + i * unit..][..piece.len()].copy_from_slice(piece);
            }
        }
        disk
    }

    /// How many records from the first are on `disk` as written.
    fn kept(records: &[Record], disk: &[u8]) -> usize {
        let on_disk =
            |(i, r): &(usize, &Record)| disk.get(i * RECORD_LEN..(i + 1) * RECORD_LEN) == Some(r.as_bytes());
        records.iter().enumerate().take_while(on_disk).count()
    }

    /// The reviewer's case (records 1-10 durable; the write of 11-20 at
    /// 512-byte blocks kept its second block and lost its first) as bytes.
    fn reviewers_case() -> (Vec<Record>, Vec<u8>) {
        let records = numbered(20);
        let (before, start, write) = written(&records, &[10, 10], 512);
        (marked(&records, &[10, 10]), torn(&before, start, &write, 512, |i| i == 0))
    }

    proptest! {
        /// A crash cuts the log anywhere in its last record: recovery gives
        /// exactly the whole records before the cut.
        #[test]
        fn a_cut_anywhere_in_the_last_record_keeps_exactly_the_whole_ones(
            kinds in proptest::collection::vec(any::<u8>(), 1..40),
        ) {
            let records = history(&kinds);
            let bytes = bytes_of(&records);
            let last = bytes.len() - RECORD_LEN;
            for cut in last..=bytes.len() {
                let scanned = scan(&bytes[..cut], 1).unwrap();
                let whole = cut / RECORD_LEN;
                prop_assert_eq!(&scanned.records[..], &records[..whole]);
                prop_assert_eq!(scanned.valid_len, whole * RECORD_LEN);
                prop_assert_eq!(scanned.next_seq, whole as u64 + 1);
            }
        }

        /// A torn last record, or zeros after the log, is cut off.
        #[test]
        fn garbage_or_zeros_after_the_last_record_are_cut(
            kinds in proptest::collection::vec(any::<u8>(), 1..20),
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            zeros in 0usize..4096,
        ) {
            let records = history(&kinds);
            let mut bytes = bytes_of(&records);
            bytes.extend_from_slice(&tail);
            bytes.extend(std::iter::repeat_n(0u8, zeros));
            let scanned = scan(&bytes, 1).unwrap();
            prop_assert_eq!(&scanned.records[..], &records[..]);
        }

        /// Any byte flipped in a record that has a valid record after it is
        /// reported, with that record's offset.
        #[test]
        fn a_flipped_byte_in_the_middle_is_reported_with_its_offset(
            kinds in proptest::collection::vec(any::<u8>(), 2..30),
            pick in any::<usize>(),
            byte in 0usize..RECORD_LEN,
            bit in 0u8..8,
        ) {
            let records = history(&kinds);
            let mut bytes = bytes_of(&records);
            let victim = pick % (records.len() - 1);
            bytes[victim * RECORD_LEN + byte] ^= 1 << bit;
            match scan(&bytes, 1) {
                Err(ScanError::Corrupt { offset, .. }) => prop_assert_eq!(offset, victim * RECORD_LEN),
                // A flip in the sequence field can still checksum-fail; any
                // other outcome is a silent skip, which must never happen.
                other => prop_assert!(false, "flip at record {} not reported: {:?}", victim, other),
            }
        }
    }

    proptest! {
        /// A power cut during the last of several writes keeps any subset of
        /// its blocks (or of its sectors): the scan keeps every record of the
        /// earlier writes and of the last one up to its first lost record,
        /// and nothing else.
        #[test]
        fn a_torn_last_write_is_cut_at_its_first_lost_record(
            writes in proptest::collection::vec(1usize..300, 1..6),
            block in prop_oneof![Just(512usize), Just(4096)],
            sectors in any::<bool>(),
            lost in any::<u64>(),
        ) {
            let plain = numbered(writes.iter().sum());
            let (before, start, write) = written(&plain, &writes, block);
            let records = marked(&plain, &writes);
            let unit = if sectors { 512 } else { block };
            prop_assert!(write.len() / unit <= 64, "one bit of `lost` a unit");
            let disk = torn(&before, start, &write, unit, |i| lost >> i & 1 == 1);
            let kept = kept(&records, &disk);
            prop_assert!(kept >= records.len() - writes[writes.len() - 1], "the earlier writes are durable");
            let scanned = scan(&disk, 1);
            prop_assert!(scanned.is_ok(), "{:?}", scanned);
            let scanned = scanned.unwrap();
            prop_assert_eq!(&scanned.records[..], &records[..kept]);
            prop_assert_eq!(scanned.valid_len, kept * RECORD_LEN);
            prop_assert_eq!(scanned.next_seq, kept as u64 + 1);
        }
    }

    #[test]
    fn a_last_write_whose_first_block_was_lost_is_cut_at_the_hole() {
        let (records, disk) = reviewers_case();
        assert_eq!(&disk[1024..1280], bytes_of(&records[16..]), "the second block is there");
        let cut = Scanned { records: records[..10].to_vec(), valid_len: 640, next_seq: 11 };
        assert_eq!(scan(&disk, 1), Ok(cut));
        // At 4096 bytes: the lost first block holds the old tail then zeros,
        // or only zeros when the old records ended on a block boundary.
        let plain = numbered(200);
        for durable in [10, 64] {
            let (before, start, write) = written(&plain, &[durable, 200 - durable], 4096);
            let records = marked(&plain, &[durable, 200 - durable]);
            let disk = torn(&before, start, &write, 4096, |i| i == 0);
            let scanned = scan(&disk, 1).unwrap();
            assert_eq!(scanned.records, records[..durable], "{durable} durable");
            assert_eq!(scanned.valid_len, durable * RECORD_LEN);
        }
    }

    #[test]
    fn garbage_in_a_hole_with_valid_records_after_is_corruption() {
        let (_, disk) = reviewers_case();
        let hole = 640;
        // Not zeros where the hole begins, in the hole, or in the last record
        // after it: bit rot, which no lost write leaves.
        for at in [hole, hole + 3, 1023, 1280 - RECORD_LEN, 1279] {
            let mut disk = disk.clone();
            disk[at] ^= 0x10;
            assert!(
                matches!(scan(&disk, 1), Err(ScanError::Corrupt { offset: 640, .. })),
                "garbage at {at}: {:?}",
                scan(&disk, 1)
            );
        }
    }

    #[test]
    fn a_hole_farther_than_one_write_before_valid_records_is_corruption() {
        // Records 1-10, then zeros, then records in place up to `end` bytes
        // past the hole: a torn write reaches at most TORN_WRITE_BYTES_MAX.
        let hole = 10 * RECORD_LEN;
        for (reach, torn) in [(TORN_WRITE_BYTES_MAX, true), (TORN_WRITE_BYTES_MAX + RECORD_LEN, false)] {
            let records = numbered((hole + reach) / RECORD_LEN);
            let mut disk = bytes_of(&records);
            disk[hole..hole + reach - RECORD_LEN].fill(0);
            match scan(&disk, 1) {
                Ok(scanned) => assert!(torn && scanned.records == records[..10], "reach {reach}"),
                Err(error) => {
                    assert!(!torn && matches!(error, ScanError::Corrupt { offset, .. } if offset == hole))
                }
            }
        }
    }

    #[test]
    fn a_valid_record_out_of_place_after_a_hole_is_corruption() {
        let (records, disk) = reviewers_case();
        // At record 17's place: record 18, record 9 (from the old tail), or
        // record 40.
        let strangers = [records[17], records[8], numbered(40)[39]];
        for stranger in strangers {
            let mut disk = disk.clone();
            disk[16 * RECORD_LEN..17 * RECORD_LEN].copy_from_slice(stranger.as_bytes());
            assert!(
                matches!(scan(&disk, 1), Err(ScanError::Corrupt { offset: 640, .. })),
                "record {} at record 17's place",
                stranger.seq.get()
            );
        }
    }

    #[test]
    fn a_hole_in_an_earlier_write_is_corruption_however_close_the_later_writes() {
        // Writes of 10 records at 4096-byte blocks (group commits under a
        // light load); one sector of the third, synced and acknowledged,
        // reads back as zeros. The writes after it are well within one
        // write's reach, but each begins with its mark: corruption.
        let writes = [10usize; 8];
        let plain = numbered(80);
        let records = marked(&plain, &writes);
        let mut disk = bytes_of(&records);
        let hole = 25 * RECORD_LEN;
        disk[hole..hole + 512].fill(0);
        assert!(
            matches!(scan(&disk, 1), Err(ScanError::Corrupt { offset, .. }) if offset == hole),
            "{:?}",
            scan(&disk, 1).map(|s| s.records.len())
        );
        // The same zeros in the last write are a torn write, cut there.
        let mut disk = bytes_of(&records);
        let hole = 72 * RECORD_LEN;
        disk[hole..hole + 256].fill(0);
        assert_eq!(scan(&disk, 1).unwrap().records, records[..72]);
    }

    #[test]
    fn a_hole_before_records_that_mark_no_writes_is_corruption() {
        // Version 1 logs carry no write marks: a hole before valid records
        // stays corruption there, as it was when they were written.
        let records: Vec<Record> = numbered(20)
            .into_iter()
            .map(|r| {
                let mut bytes = r.as_bytes().to_vec();
                bytes[5] = super::super::record::RECORD_VERSION_NO_FLAGS;
                let crc = crc32c::crc32c(&bytes[4..]);
                bytes[..4].copy_from_slice(&crc.to_le_bytes());
                Record::read(&bytes).unwrap()
            })
            .collect();
        let mut disk = bytes_of(&records);
        disk[10 * RECORD_LEN..12 * RECORD_LEN].fill(0);
        assert!(matches!(scan(&disk, 1), Err(ScanError::Corrupt { offset: 640, .. })));
    }

    #[test]
    fn a_record_out_of_sequence_is_refused() {
        let mut records = history(&[0, 1, 2]);
        records.swap(1, 2);
        let bytes = bytes_of(&records);
        assert_eq!(scan(&bytes, 1), Err(ScanError::OutOfSequence { offset: 64, expected: 2, found: 3 }));
        assert!(scan(&bytes_of(&history(&[0])), 2).is_err(), "a log that does not start where expected");
    }
}
