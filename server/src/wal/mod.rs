//! The write-ahead log: what a shard writes down before it acknowledges a
//! change, and how a log is read back.
//!
//! This module is sans IO: [`record`] is the on-disk record format (fixed 64
//! bytes, crc32c, sequence number) and [`scan`] reads a log's bytes back into
//! records, cutting a torn tail and refusing corruption in the middle. The
//! engine turns its changes into records ([`crate::engine::Engine::take_journal`])
//! and replays them ([`crate::engine::Engine::replay`]).

pub mod record;
pub mod scan;

pub use record::{Record, RecordKind, RECORD_LEN};
pub use scan::{scan, ScanError, Scanned};
