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
//! * The last valid record after `h` ends within [`TORN_WRITE_BYTES_MAX`] of
//!   `h`. Only the last write can be torn (the next one starts after the
//!   previous `fdatasync`), and the hole lies at or after its start. A write
//!   holds the old tail it rewrites (less than one block, and a block is at
//!   most [`BLOCK_BYTES_MAX`](super::segment::BLOCK_BYTES_MAX)) and at most
//!   [`WRITE_RECORDS_MAX`](super::segment::WRITE_RECORDS_MAX) new records.
//!   A valid record farther on puts the hole in an earlier write, one that
//!   was synced and acknowledged: that is corruption, not a crash.
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
    debug_assert!(hole % RECORD_LEN == 0 && hole + RECORD_LEN <= bytes.len());
    let mut valid_after = false;
    // A chunk no torn write can leave: non-zero garbage, a record out of
    // place, or a record beyond the reach of one write.
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
                foreign |= !(in_place && reachable);
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
            write.extend(bytes_of(&records[len / RECORD_LEN..][..n]));
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
        (records, torn(&before, start, &write, 512, |i| i == 0))
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
            let records = numbered(writes.iter().sum());
            let (before, start, write) = written(&records, &writes, block);
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
        let records = numbered(200);
        for durable in [10, 64] {
            let (before, start, write) = written(&records, &[durable, 200 - durable], 4096);
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
    fn a_record_out_of_sequence_is_refused() {
        let mut records = history(&[0, 1, 2]);
        records.swap(1, 2);
        let bytes = bytes_of(&records);
        assert_eq!(scan(&bytes, 1), Err(ScanError::OutOfSequence { offset: 64, expected: 2, found: 3 }));
        assert!(scan(&bytes_of(&history(&[0])), 2).is_err(), "a log that does not start where expected");
    }
}
