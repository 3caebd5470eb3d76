//! One log record: a fixed 64-byte, little-endian, checksummed change.
//!
//! ```text
//!  0       4    5    6       8               16              24
//! +-------+----+----+-------+---------------+---------------+
//! | crc32c|kind|ver | flags |   sequence    |   envelope    |
//! +-------+----+----+-------+---------------+---------------+
//! 24              32              40              48              56              64
//! +---------------+---------------+---------------+---------------+---------------+
//! |       a       |       b       |       c       |       d       |       e       |
//! +---------------+---------------+---------------+---------------+---------------+
//! ```
//!
//! The checksum covers bytes 4..64. The sequence starts at 1 and grows by one
//! per record of a shard, so a reader knows a record that is whole but out of
//! place. Fields a..e by kind:
//!
//! | kind | a | b | c | d | e |
//! | --- | --- | --- | --- | --- | --- |
//! | create | sender | total cents | count, kind << 32 | created at ms | expires at ms |
//! | open | user | amount cents | order | 0 | 0 |
//! | expire | refunded cents | at ms | 0 | 0 | 0 |
//! | evict | at ms | 0 | 0 | 0 | 0 |
//!
//! Flags (version 2): bit 0 marks the first record of one write of the log
//! (see [`super::segment::SegmentWriter::append`]), so that reading a log back
//! can tell a power cut tearing the last write from a hole in an earlier,
//! acknowledged one (see [`super::scan`]). Every other bit is 0. Version 1
//! records have no flags (the two bytes are 0) and are still read.
//!
//! Reservations (GRAB) are not logged: they lapse by themselves, and after a
//! crash a user simply grabs again. Everything that moves money is.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Bytes of one record.
pub const RECORD_LEN: usize = 64;
/// Record format version written.
pub const RECORD_VERSION: u8 = 2;
/// The oldest version still read: it has no flags.
pub const RECORD_VERSION_NO_FLAGS: u8 = 1;
/// Flag: the first record of one write of the log.
pub const FLAG_WRITE_START: u16 = 1;
/// Largest sequence number a record, segment or snapshot may carry (29,000
/// years at 10M records a second), so that one past it never overflows.
pub const SEQ_MAX: u64 = i64::MAX as u64;

/// What a record says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// An envelope was created.
    Create,
    /// A share was paid.
    Open,
    /// An envelope expired and its remainder was refunded.
    Expire,
    /// An envelope left memory after its retention; its slot may be reused.
    Evict,
}

impl RecordKind {
    fn code(self) -> u8 {
        match self {
            RecordKind::Create => 1,
            RecordKind::Open => 2,
            RecordKind::Expire => 3,
            RecordKind::Evict => 4,
        }
    }

    fn from_code(code: u8) -> Option<RecordKind> {
        match code {
            1 => Some(RecordKind::Create),
            2 => Some(RecordKind::Open),
            3 => Some(RecordKind::Expire),
            4 => Some(RecordKind::Evict),
            _ => None,
        }
    }
}

/// A record as it lies on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Record {
    crc: U32,
    kind: u8,
    version: u8,
    flags: U16,
    /// Per-shard sequence number, from 1.
    pub seq: U64,
    /// The envelope changed.
    pub envelope: U64,
    /// Kind-specific fields, see the module table.
    pub fields: [U64; 5],
}

const _: () = assert!(core::mem::size_of::<Record>() == RECORD_LEN);

/// Why 64 bytes are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The checksum does not match.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    /// Unknown kind or version, or unknown flags set.
    #[error("unknown kind {kind} or version {version}, or unknown flags set")]
    Format { kind: u8, version: u8 },
    /// Fields out of their domain.
    #[error("{kind:?} record with fields out of range")]
    Fields { kind: RecordKind },
}

impl Record {
    fn new(kind: RecordKind, seq: u64, envelope: u64, fields: [u64; 5]) -> Record {
        let mut record = Record {
            crc: U32::new(0),
            kind: kind.code(),
            version: RECORD_VERSION,
            flags: U16::new(0),
            seq: U64::new(seq),
            envelope: U64::new(envelope),
            fields: fields.map(U64::new),
        };
        record.crc = U32::new(record.computed_crc());
        record
    }

    /// A CREATE record.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        seq: u64,
        envelope: u64,
        sender: u64,
        total_cents: u64,
        count: u32,
        kind: u8,
        created_at_ms: u64,
        expires_at_ms: u64,
    ) -> Record {
        let c = u64::from(count) | (u64::from(kind) << 32);
        Record::new(RecordKind::Create, seq, envelope, [sender, total_cents, c, created_at_ms, expires_at_ms])
    }

    /// An OPEN record.
    pub fn open(seq: u64, envelope: u64, user: u64, amount_cents: u64, order: u32) -> Record {
        Record::new(RecordKind::Open, seq, envelope, [user, amount_cents, u64::from(order), 0, 0])
    }

    /// An EXPIRE record.
    pub fn expire(seq: u64, envelope: u64, refunded_cents: u64, at_ms: u64) -> Record {
        Record::new(RecordKind::Expire, seq, envelope, [refunded_cents, at_ms, 0, 0, 0])
    }

    /// An EVICT record.
    pub fn evict(seq: u64, envelope: u64, at_ms: u64) -> Record {
        Record::new(RecordKind::Evict, seq, envelope, [at_ms, 0, 0, 0, 0])
    }

    /// The same record marked as the first of a write (checksum updated).
    pub fn marked_write_start(mut self) -> Record {
        self.version = RECORD_VERSION;
        self.flags = U16::new(self.flags.get() | FLAG_WRITE_START);
        self.crc = U32::new(self.computed_crc());
        self
    }

    /// Whether it is marked as the first record of a write.
    pub fn starts_write(&self) -> bool {
        self.flags.get() & FLAG_WRITE_START != 0
    }

    /// Whether its version marks write starts at all (version 1 did not).
    pub fn marks_writes(&self) -> bool {
        self.version >= RECORD_VERSION
    }

    fn computed_crc(&self) -> u32 {
        crc32c::crc32c(&self.as_bytes()[4..])
    }

    /// The kind; valid records only.
    pub fn kind(&self) -> RecordKind {
        RecordKind::from_code(self.kind).expect("validated record")
    }

    /// Field `i` (0..5) as a number.
    pub fn field(&self, i: usize) -> u64 {
        self.fields[i].get()
    }

    /// Checks a record before it is written or after it is read: checksum,
    /// format, and that its fields are in their domain.
    pub fn validate(&self) -> Result<(), RecordError> {
        let computed = self.computed_crc();
        if computed != self.crc.get() {
            return Err(RecordError::Checksum { stored: self.crc.get(), computed });
        }
        let Some(kind) = RecordKind::from_code(self.kind) else {
            return Err(RecordError::Format { kind: self.kind, version: self.version });
        };
        let seq = self.seq.get();
        let known_flags = match self.version {
            RECORD_VERSION => FLAG_WRITE_START,
            RECORD_VERSION_NO_FLAGS => 0,
            _ => return Err(RecordError::Format { kind: self.kind, version: self.version }),
        };
        if self.flags.get() & !known_flags != 0 || seq == 0 || seq > SEQ_MAX {
            return Err(RecordError::Format { kind: self.kind, version: self.version });
        }
        let f = |i: usize| self.field(i);
        let ok = match kind {
            RecordKind::Create => {
                let count = f(2) & 0xffff_ffff;
                let envelope_kind = f(2) >> 32;
                f(0) != 0 && count >= 1 && f(1) >= count && envelope_kind <= 1 && f(4) >= f(3)
            }
            RecordKind::Open => {
                f(0) != 0 && f(1) >= 1 && f(2) >= 1 && f(2) <= u64::from(u32::MAX) && f(3) == 0 && f(4) == 0
            }
            RecordKind::Expire => f(2) == 0 && f(3) == 0 && f(4) == 0,
            RecordKind::Evict => f(1) == 0 && f(2) == 0 && f(3) == 0 && f(4) == 0,
        };
        if !ok {
            return Err(RecordError::Fields { kind });
        }
        Ok(())
    }

    /// Reads and validates a record from exactly [`RECORD_LEN`] bytes.
    pub fn read(bytes: &[u8]) -> Result<Record, RecordError> {
        let record =
            Record::read_from_bytes(bytes).map_err(|_| RecordError::Format { kind: 0, version: 0 })?;
        record.validate()?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_validate() {
        let records = [
            Record::create(1, 7, 42, 1000, 3, 0, 5, 86_400_005),
            Record::open(2, 7, 9, 333, 1),
            Record::expire(3, 7, 667, 86_400_005),
        ];
        for record in records {
            assert_eq!(record.validate(), Ok(()));
            assert_eq!(Record::read(record.as_bytes()), Ok(record));
        }
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let record = Record::open(2, 7, 9, 333, 1);
        for byte in 0..RECORD_LEN {
            for bit in 0..8 {
                let mut bytes = record.as_bytes().to_vec();
                bytes[byte] ^= 1 << bit;
                assert!(Record::read(&bytes).is_err(), "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn out_of_range_fields_are_refused_before_writing() {
        assert!(Record::open(2, 7, 0, 333, 1).validate().is_err(), "user 0");
        assert!(Record::open(2, 7, 9, 0, 1).validate().is_err(), "zero share");
        assert!(Record::create(1, 7, 42, 2, 3, 0, 5, 6).validate().is_err(), "total below count");
        assert!(Record::create(1, 7, 42, 10, 3, 2, 5, 6).validate().is_err(), "unknown kind");
        assert!(Record::create(0, 7, 42, 10, 3, 0, 5, 6).validate().is_err(), "sequence 0");
    }

    /// A record with its version and flags set as given, checksum fixed.
    fn with(record: Record, version: u8, flags: u16) -> Record {
        let mut record = record;
        record.version = version;
        record.flags = U16::new(flags);
        record.crc = U32::new(record.computed_crc());
        record
    }

    #[test]
    fn the_write_start_flag_and_version_1_records() {
        let record = Record::open(2, 7, 9, 333, 1);
        assert!(!record.starts_write() && record.marks_writes());
        let marked = record.marked_write_start();
        assert_eq!(marked.validate(), Ok(()));
        assert!(marked.starts_write());
        assert_eq!(
            (marked.seq, marked.envelope, marked.fields),
            (record.seq, record.envelope, record.fields)
        );
        // Version 1 (no flags) is still read, but has none.
        let old = with(record, RECORD_VERSION_NO_FLAGS, 0);
        assert_eq!(old.validate(), Ok(()));
        assert!(!old.marks_writes() && !old.starts_write());
        assert!(with(record, RECORD_VERSION_NO_FLAGS, FLAG_WRITE_START).validate().is_err());
        // Unknown flags and versions are refused.
        assert!(with(record, RECORD_VERSION, 2).validate().is_err());
        assert!(with(record, RECORD_VERSION + 1, 0).validate().is_err());
        assert!(with(record, 0, 0).validate().is_err());
    }
}
