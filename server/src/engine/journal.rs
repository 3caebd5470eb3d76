//! The records of the changes an engine made, waiting for the write-ahead log.
//!
//! Every change that moves money (create, open, expire) and every eviction is
//! turned into a [`Record`] here, numbered, and checked before it is handed to
//! the log. With durability off the journal is disabled and costs a branch.

use crate::wal::Record;

/// Numbered records not yet taken by the log.
#[derive(Debug)]
pub struct Journal {
    enabled: bool,
    records: Vec<Record>,
    next_seq: u64,
}

impl Journal {
    /// A journal whose first record will be `next_seq`.
    pub fn new(enabled: bool, next_seq: u64) -> Journal {
        Journal { enabled, records: Vec::new(), next_seq }
    }

    /// Appends the record `make(seq)` if journaling is on. Returns its
    /// number, or 0 with journaling off.
    pub fn push(&mut self, make: impl FnOnce(u64) -> Record) -> u64 {
        if !self.enabled {
            return 0;
        }
        let record = make(self.next_seq);
        // Check the data before it is written (and the log checks it again
        // after it is read back).
        if let Err(why) = record.validate() {
            panic!("engine made an invalid log record {record:?}: {why}");
        }
        self.records.push(record);
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Moves the pending records to the end of `into`.
    pub fn take(&mut self, into: &mut Vec<Record>) {
        into.append(&mut self.records);
    }

    /// Records waiting.
    pub fn pending(&self) -> usize {
        self.records.len()
    }

    /// The sequence number of the next record.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Accepts a replayed record's sequence number.
    pub fn replayed(&mut self, seq: u64) -> bool {
        if seq != self.next_seq {
            return false;
        }
        self.next_seq += 1;
        true
    }
}
