//! What a shard counts, for STATS and the metrics endpoint. Cells, not
//! atomics: only the shard's own thread touches them. STATS reads them as
//! they are; every tick the shard copies them for the endpoint
//! ([`crate::metrics`]), so both report the same figures.

use std::cell::Cell;
use std::time::Duration;

use hongbao_protocol::{Opcode, Status, HEADER_LEN};

/// Upper bounds (µs) of the latency histograms' buckets; +Inf follows.
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];
/// Buckets of a histogram: one per bound and +Inf.
pub const BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;
/// Opcodes counted, and one slot for requests without a known opcode.
pub const OPS: usize = Opcode::ALL.len() + 1;
/// Statuses counted.
pub const STATUSES: usize = Status::ALL.len();
/// A gap between two turns of a shard's socket loop at least this long is a
/// stall: the loop turns in tens of microseconds under load, so a millisecond
/// means the core was taken away (or one turn's work ran that long).
pub const LOOP_STALL_MIN: Duration = Duration::from_millis(1);

/// What a shard counts besides its engine.
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Connections open now.
    pub connections: Cell<u64>,
    /// Connections refused at accept because the shard was full.
    pub connections_refused: Cell<u64>,
    /// HELLOs with a wrong token that ended an authentication: the socket
    /// loop compares it around each connection's answers to restart that
    /// connection's --auth-timeout (PROTOCOL.md 3.4).
    pub authentications_ended: Cell<u64>,
    /// Memory the connections' buffers held at the last sweep.
    pub connection_buffer_bytes: Cell<u64>,
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
    /// Answers by opcode and status.
    pub answers: LocalRequests,
    /// Latency of the requests received on this shard's connections, by opcode.
    pub latency: LocalLatency,
    /// Socket-loop gaps of [`LOOP_STALL_MIN`] or more (not counting parks).
    pub loop_stalls: Cell<u64>,
    /// Their lengths added up, in microseconds.
    pub loop_stall_us: Cell<u64>,
    /// The longest, in microseconds.
    pub loop_stall_max_us: Cell<u64>,
    /// Time of the socket loop's turns that found work, and of the other
    /// tasks' work between turns, nanoseconds.
    pub loop_busy_ns: Cell<u64>,
    /// Time of the turns that found none, and between turns with no task
    /// working (breaths, parks), nanoseconds: with `loop_busy_ns` it says
    /// whether the shard is the side that limits.
    pub loop_idle_ns: Cell<u64>,
    /// Work of other tasks not yet counted into `loop_busy_ns`.
    other_work_ns: Cell<u64>,
}

impl ShardCounters {
    /// The socket loop ran again `gap` after the end of its last turn (it
    /// did not park in between): a stall if the gap is [`LOOP_STALL_MIN`]
    /// or more.
    pub fn note_turn_gap(&self, gap: Duration) {
        if gap >= LOOP_STALL_MIN {
            let us = gap.as_micros().min(u128::from(u64::MAX)) as u64;
            add(&self.loop_stalls, 1);
            add(&self.loop_stall_us, us);
            self.loop_stall_max_us.set(self.loop_stall_max_us.get().max(us));
        }
    }

    /// One turn of the socket loop took `time`; `worked`: it found
    /// something to do. Only the turn itself counts: the time between turns
    /// goes to [`ShardCounters::note_between_turns`].
    pub fn note_turn(&self, time: Duration, worked: bool) {
        add(if worked { &self.loop_busy_ns } else { &self.loop_idle_ns }, nanos(time));
    }

    /// The shard's other tasks (the timer tick) worked for `time`, between
    /// two turns of the socket loop.
    pub fn note_other_work(&self, time: Duration) {
        add(&self.other_work_ns, nanos(time));
    }

    /// `time` passed between two turns of the socket loop (a yield, a
    /// breath, a park): busy for as long as the other tasks said they
    /// worked in it, idle for the rest.
    pub fn note_between_turns(&self, time: Duration) {
        let outside = nanos(time);
        let other = self.other_work_ns.replace(0).min(outside);
        add(&self.loop_busy_ns, other);
        add(&self.loop_idle_ns, outside - other);
    }
}

fn nanos(time: Duration) -> u64 {
    time.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Adds `n` to a counter.
pub fn add(counter: &Cell<u64>, n: u64) {
    counter.set(counter.get().wrapping_add(n));
}

/// The counter slot of an opcode byte: its place in [`Opcode::ALL`] (checked
/// by a test), or the last slot for an opcode the table does not name.
pub const fn op_slot(opcode: u8) -> usize {
    match opcode {
        0x01 => 0,
        0x02 => 1,
        0x10 => 2,
        0x11 => 3,
        0x12 => 4,
        0x13 => 5,
        0x20 => 6,
        _ => OPS - 1,
    }
}

/// [`op_slot`] of every byte, for the per-answer loop of
/// [`LocalLatency::record_answers`]: one load instead of a chain of compares.
const OP_SLOTS: [u8; 256] = {
    let mut slots = [0; 256];
    let mut byte = 0;
    while byte < slots.len() {
        slots[byte] = op_slot(byte as u8) as u8;
        byte += 1;
    }
    slots
};

/// The opcode of a counter slot; `None` for the slot of unknown opcodes.
pub fn slot_opcode(slot: usize) -> Option<Opcode> {
    Opcode::ALL.get(slot).copied()
}

/// A latency histogram a shard fills on its own thread.
#[derive(Debug, Default)]
pub struct LocalHistogram {
    buckets: [Cell<u64>; BUCKETS],
    sum_us: Cell<u64>,
}

impl LocalHistogram {
    /// Records one duration.
    pub fn record(&self, elapsed: Duration) {
        self.record_n(elapsed, 1);
    }

    /// Records `n` events that each took `elapsed` (the requests of one batch).
    pub fn record_n(&self, elapsed: Duration, n: u64) {
        let us = elapsed.as_micros() as u64;
        let slot = LATENCY_BUCKETS_US.iter().position(|bound| us <= *bound).unwrap_or(BUCKETS - 1);
        add(&self.buckets[slot], n);
        add(&self.sum_us, us.wrapping_mul(n));
    }

    /// The bucket counts (not cumulative), in bound order, +Inf last.
    pub fn buckets(&self) -> impl Iterator<Item = u64> + '_ {
        self.buckets.iter().map(Cell::get)
    }

    /// Sum of the durations recorded, µs.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.get()
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.buckets().fold(0, u64::wrapping_add)
    }
}

/// Per-opcode, per-status answer counts a shard fills on its own thread.
#[derive(Debug)]
pub struct LocalRequests {
    counts: [[Cell<u64>; STATUSES]; OPS],
}

impl Default for LocalRequests {
    fn default() -> LocalRequests {
        LocalRequests { counts: std::array::from_fn(|_| std::array::from_fn(|_| Cell::new(0))) }
    }
}

impl LocalRequests {
    /// Counts one answer.
    pub fn record(&self, opcode: u8, status: Status) {
        add(&self.counts[op_slot(opcode)][status as usize], 1);
    }

    /// The count of every status of an opcode slot.
    pub fn row(&self, slot: usize) -> impl Iterator<Item = (Status, u64)> + '_ {
        Status::ALL.iter().zip(&self.counts[slot]).map(|(status, count)| (*status, count.get()))
    }

    /// The count of every (slot, status), slot by slot in [`op_slot`] order.
    pub fn rows(&self) -> impl Iterator<Item = (usize, Status, u64)> + '_ {
        self.counts.iter().enumerate().flat_map(|(slot, row)| {
            Status::ALL.iter().zip(row).map(move |(status, count)| (slot, *status, count.get()))
        })
    }
}

/// One latency histogram per opcode slot.
#[derive(Debug, Default)]
pub struct LocalLatency {
    ops: [LocalHistogram; OPS],
}

impl LocalLatency {
    /// The histogram of an opcode slot.
    pub fn slot(&self, slot: usize) -> &LocalHistogram {
        &self.ops[slot]
    }

    /// Records `elapsed` for every answer in `answers` (whole response frames,
    /// as a connection writes them), once per opcode present with the number
    /// of its answers. Reading the opcodes back from the answers counts
    /// exactly the requests this write answers, forwarded and refused ones
    /// included, without the connection keeping a tally; the headers were
    /// just written, so they are in cache.
    pub fn record_answers(&self, answers: &[u8], elapsed: Duration) {
        let mut per_slot = [0u64; OPS];
        let mut at = 0;
        while let Some(header) = answers.get(at..at + HEADER_LEN) {
            // The unasked `timeout` (request id 0) before a close answers no
            // request, so it is not timed as one (PROTOCOL.md 7.7: an
            // opcode's histogram counts its requests).
            let unasked = u16::from_le_bytes([header[6], header[7]]) == Status::Timeout as u16
                && header[16..24] == [0; 8];
            if !unasked {
                per_slot[usize::from(OP_SLOTS[usize::from(header[3])])] += 1;
            }
            let body_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
            at += HEADER_LEN + body_len as usize;
        }
        debug_assert_eq!(at, answers.len(), "answers hold whole frames only");
        for (histogram, n) in self.ops.iter().zip(per_slot) {
            if n > 0 {
                histogram.record_n(elapsed, n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use hongbao_protocol::codec::write_response;

    use super::*;

    #[test]
    fn loop_gaps_of_a_millisecond_or_more_are_stalls() {
        let counters = ShardCounters::default();
        counters.note_turn_gap(Duration::from_micros(999));
        assert_eq!(counters.loop_stalls.get(), 0);
        counters.note_turn_gap(LOOP_STALL_MIN);
        counters.note_turn_gap(Duration::from_micros(7_250));
        counters.note_turn_gap(Duration::from_micros(1_500));
        assert_eq!(counters.loop_stalls.get(), 3);
        assert_eq!(counters.loop_stall_us.get(), 1_000 + 7_250 + 1_500);
        assert_eq!(counters.loop_stall_max_us.get(), 7_250);
    }

    #[test]
    fn turns_count_as_busy_or_idle_and_time_between_them_as_idle() {
        let counters = ShardCounters::default();
        counters.note_turn(Duration::from_nanos(1_500), true);
        counters.note_turn(Duration::from_nanos(700), false);
        counters.note_between_turns(Duration::from_micros(3));
        counters.note_turn(Duration::from_nanos(2_000), true);
        assert_eq!(counters.loop_busy_ns.get(), 3_500);
        assert_eq!(counters.loop_idle_ns.get(), 700 + 3_000);
    }

    #[test]
    fn other_tasks_work_between_turns_counts_as_busy_once() {
        let counters = ShardCounters::default();
        counters.note_other_work(Duration::from_nanos(400));
        counters.note_between_turns(Duration::from_nanos(1_000));
        assert_eq!((counters.loop_busy_ns.get(), counters.loop_idle_ns.get()), (400, 600));
        // Never more than the time between the turns, and not again.
        counters.note_other_work(Duration::from_nanos(5_000));
        counters.note_between_turns(Duration::from_nanos(2_000));
        counters.note_between_turns(Duration::from_nanos(1_000));
        assert_eq!((counters.loop_busy_ns.get(), counters.loop_idle_ns.get()), (2_400, 1_600));
    }

    #[test]
    fn op_slots_follow_the_opcode_table() {
        for (i, op) in Opcode::ALL.iter().enumerate() {
            assert_eq!(op_slot(*op as u8), i);
            assert_eq!(slot_opcode(i), Some(*op));
        }
        assert_eq!(op_slot(0x7f), OPS - 1);
        assert_eq!(slot_opcode(OPS - 1), None);
        for byte in 0..=255u8 {
            assert_eq!(usize::from(OP_SLOTS[usize::from(byte)]), op_slot(byte));
        }
        // STATS lists slots in wire order: the table ascending, then "other" (0x00) first.
        assert!(Opcode::ALL.windows(2).all(|w| (w[0] as u8) < (w[1] as u8)));
    }

    #[test]
    fn a_batch_is_recorded_once_per_opcode_with_its_count() {
        let mut out = Vec::new();
        for (opcode, body) in [(0x11, &[0u8; 24][..]), (0x12, &[0; 16]), (0x11, &[0; 24]), (0x7f, &[])] {
            write_response(&mut out, opcode, 1, Status::Ok, &[body]);
        }
        let latency = LocalLatency::default();
        // The unasked timeout before a close answers no request.
        write_response(&mut out, 0, 0, Status::Timeout, &[]);
        latency.record_answers(&out, Duration::from_micros(300));
        latency.record_answers(&[], Duration::from_micros(1));
        let grab = latency.slot(op_slot(0x11));
        assert_eq!((grab.count(), grab.sum_us()), (2, 600));
        // 300 µs is above the 250 µs bound and within the 500 µs one.
        let bucket = LATENCY_BUCKETS_US.iter().position(|b| *b == 500).unwrap();
        assert_eq!(grab.buckets().nth(bucket), Some(2));
        assert_eq!(latency.slot(op_slot(0x12)).count(), 1);
        assert_eq!(latency.slot(OPS - 1).count(), 1);
        assert_eq!(latency.slot(op_slot(0x10)).count(), 0);
    }

    #[test]
    fn durations_past_the_last_bound_go_to_the_last_bucket() {
        let h = LocalHistogram::default();
        h.record(Duration::from_secs(5));
        h.record_n(Duration::ZERO, 3);
        let buckets: Vec<u64> = h.buckets().collect();
        assert_eq!((buckets[0], buckets[BUCKETS - 1], h.count()), (3, 1, 4));
        assert_eq!(h.sum_us(), 5_000_000);
    }
}
