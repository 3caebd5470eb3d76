//! The write-ahead log: what a shard writes down before it acknowledges a
//! change, and how a log is read back.
//!
//! [`record`] is the on-disk record format (fixed 64 bytes, crc32c, sequence
//! number) and [`scan`] reads a log's bytes back into records, cutting a torn
//! tail or torn last write and refusing corruption in the middle; both are
//! sans IO. [`segment`]
//! holds the files (direct I/O appends through glommio), [`recover`] replays
//! them at start-up, and [`group`] is the group commit that holds answers back
//! until their records are durable. The
//! engine turns its changes into records ([`crate::engine::Engine::take_journal`])
//! and replays them ([`crate::engine::Engine::replay`]).

pub mod group;
pub mod record;
pub mod recover;
pub mod scan;
pub mod segment;
pub mod snapshot;

pub use record::{Record, RecordKind, RECORD_LEN};
pub use scan::{scan, ScanError, Scanned};
