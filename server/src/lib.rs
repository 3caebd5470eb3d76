//! # hongbao-server
//!
//! A red envelope ("hongbao") server built for the New-Year storm: millions of
//! envelopes sent and opened per minute, exact to the cent.
//!
//! ## Thread per core, shared nothing
//!
//! The server runs one glommio executor per shard, each pinned to its own CPU.
//! A shard owns its envelopes outright: the [`engine::Engine`] is plain
//! single-threaded data, so the hot path takes no lock and touches no memory
//! another core writes. An envelope id carries its owner's index in its top 16
//! bits, so every request can be routed without a lookup.
//!
//! ## Two ways in
//!
//! * The **main port** is bound by every shard with `SO_REUSEPORT`; the kernel
//!   spreads connections across shards. A request for another shard's envelope
//!   is forwarded over glommio's channel mesh in one batch per read, answered
//!   by its owner, and written back on the connection it came in on.
//! * Each shard's **shard-aware port** (listed by HELLO) is for routing clients:
//!   they send each request straight to its owner, and nothing is forwarded.
//!
//! ## Batching
//!
//! A connection reads into a large buffer, answers every whole frame in it,
//! and writes all the answers with one write. The answer path appends to an
//! output buffer and writes it only at the end of the batch: that is where the
//! write-ahead log's group commit will wait for durability.

pub mod auth;
pub mod clock;
pub mod config;
pub mod cores;
pub mod counters;
pub mod engine;
pub mod forward;
#[doc(hidden)]
pub mod fuzz;
pub mod handler;
pub mod log;
pub mod metrics;
pub mod net;
pub mod port_probe;
pub mod prefault;
pub mod server;
pub mod shard;
pub mod startup_checks;
pub mod stats;
pub mod sysfs_check;
pub mod wal;
pub mod watchdog;
