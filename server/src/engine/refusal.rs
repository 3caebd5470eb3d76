//! What the engine knows once the log has failed: that it must refuse every
//! change, and which paid shares the log never wrote.
//!
//! A client that lost its connection in the failure asks again (PROTOCOL.md
//! 3.3). A share paid before the failure answers its amount, at once, without
//! waiting on its envelope's later changes, which will never be written; a
//! share paid in memory whose record the log did not make durable answers
//! `unavailable`, a payment that cannot be recorded now (it was never
//! acknowledged: its answer waited on that record). Part of a failed write
//! may still have reached the disk, so such a payment can be there after a
//! restart; what is never possible is an answer showing one that is not.

use std::collections::HashSet;

use crate::wal::{Record, RecordKind};

/// Most unwritten paid shares tracked (a failed write holds one group, at most
/// a second or so of OPENs). Past it, which were written is no longer known,
/// and a repeated OPEN waits on its envelope's latest change as before the
/// failure (its connection closes if that change was not written).
pub const UNWRITTEN_OPENS_MAX: usize = 1 << 20;

/// The engine's side of a failed log.
#[derive(Debug, Default)]
pub struct Refusal {
    refusing: bool,
    /// (envelope, user) of paid shares whose OPEN records were not written.
    unwritten_opens: HashSet<(u64, u64)>,
    /// More than [`UNWRITTEN_OPENS_MAX`] were.
    overflow: bool,
}

impl Refusal {
    /// Whether changes are refused.
    pub fn refusing(&self) -> bool {
        self.refusing
    }

    /// From now on changes are refused.
    pub fn begin(&mut self) {
        self.refusing = true;
    }

    /// The log will not make `records` durable.
    pub fn note_unwritten(&mut self, records: &[Record]) {
        for record in records.iter().filter(|r| r.kind() == RecordKind::Open) {
            if self.unwritten_opens.len() >= UNWRITTEN_OPENS_MAX {
                self.overflow = true;
                return;
            }
            self.unwritten_opens.insert((record.envelope.get(), record.field(0)));
        }
    }

    /// Once refusing: whether the share `user` holds paid in `envelope` was
    /// written (`Some(true)`) or never will be (`Some(false)`). `None` before
    /// a failure, or past [`UNWRITTEN_OPENS_MAX`]: not known here, and an
    /// answer that shows it waits on the envelope's latest change.
    pub fn paid_share_written(&self, envelope: u64, user: u64) -> Option<bool> {
        (self.refusing && !self.overflow).then(|| !self.unwritten_opens.contains(&(envelope, user)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_records_count_and_the_set_is_bounded() {
        let mut refusal = Refusal::default();
        refusal.note_unwritten(&[Record::open(7, 100, 5, 30, 1), Record::expire(8, 101, 70, 1)]);
        assert_eq!(refusal.paid_share_written(100, 5), None, "not refusing yet");
        refusal.begin();
        assert_eq!(refusal.paid_share_written(100, 5), Some(false));
        assert_eq!(refusal.paid_share_written(100, 6), Some(true));
        assert_eq!(refusal.paid_share_written(101, 5), Some(true), "an expiry pays no share");
        let many: Vec<Record> =
            (0..=UNWRITTEN_OPENS_MAX as u64).map(|i| Record::open(10 + i, 200, 1 + i, 1, 1)).collect();
        refusal.note_unwritten(&many);
        assert_eq!(refusal.paid_share_written(100, 6), None, "past the bound nothing is known");
    }
}
