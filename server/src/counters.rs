//! Per-shard counters for STATS. Cells, not atomics: only the shard's own
//! thread touches them.

use std::cell::Cell;

/// What a shard counts besides its engine.
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Connections open now.
    pub connections: Cell<u64>,
    /// Connections refused at accept because the shard was full.
    pub connections_refused: Cell<u64>,
    /// Requests this shard's engine answered.
    pub requests: Cell<u64>,
    /// Requests sent to their owning shard.
    pub forwarded_out: Cell<u64>,
    /// Requests other shards sent here.
    pub forwarded_in: Cell<u64>,
    /// Bytes read from clients.
    pub bytes_in: Cell<u64>,
    /// Bytes written to clients.
    pub bytes_out: Cell<u64>,
    /// Answers by opcode and status, for the metrics endpoint.
    pub answers: crate::metrics::LocalRequests,
    /// Time from a read to its answers written.
    pub batch: crate::metrics::LocalHistogram,
}

/// Adds `n` to a counter.
pub fn add(counter: &Cell<u64>, n: u64) {
    counter.set(counter.get().wrapping_add(n));
}
