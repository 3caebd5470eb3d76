//! What one run measured: the data every report (text, JSON, plot) is made of.
//!
//! Workers fill a [`Recorder`] each, on their own thread; the main thread merges
//! them into one [`RunResult`] at the end.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use hongbao_protocol::{Opcode, Status};

use crate::slowness::SlownessSummary;
use crate::stalls::Stalls;
use crate::violations::Violations;

/// Highest latency a histogram tracks, in microseconds: the longest a
/// request can wait in any run the flags allow (due at the start of the
/// longest --warmup and --duration, answered at the end of the grace after
/// it), so the open loop's tail is never cut short. Higher values would be
/// clamped to it, and still counted.
pub const LATENCY_US_MAX: u64 =
    (crate::args::WARMUP_SECS_MAX + crate::args::DURATION_SECS_MAX + crate::driver::AFTER_END.as_secs() + 1)
        * 1_000_000;

/// Answers by status: a counter per status code, so recording one answer is
/// an index, not a map lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    counts: [u64; Status::ALL.len()],
}

impl StatusCounts {
    /// Adds `n` answers with `status`.
    pub fn add(&mut self, status: Status, n: u64) {
        self.counts[status as usize] += n;
    }

    /// The count of `status`, if any answer had it.
    pub fn get(&self, status: &Status) -> Option<&u64> {
        Some(&self.counts[*status as usize]).filter(|n| **n > 0)
    }

    /// Statuses seen, in table order, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (Status, &u64)> {
        Status::ALL.iter().zip(self.counts.iter()).filter(|(_, n)| **n > 0).map(|(s, n)| (*s, n))
    }
}

/// Figures of one operation (opcode).
#[derive(Clone, Debug)]
pub struct OpResult {
    /// Answers to requests that started in the measured period.
    pub count: u64,
    /// Answers by status.
    pub statuses: StatusCounts,
    /// Latency in microseconds, from when the request was due (open loop) or
    /// sent (closed loop) to when its answer was read.
    pub latency_us: Histogram<u64>,
}

impl OpResult {
    /// An empty result.
    pub fn new() -> OpResult {
        OpResult {
            count: 0,
            statuses: StatusCounts::default(),
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("histogram bounds"),
        }
    }

    /// Records one answer.
    pub fn record(&mut self, status: Status, latency_us: u64) {
        self.count += 1;
        self.statuses.add(status, 1);
        self.latency_us.saturating_record(latency_us.clamp(1, LATENCY_US_MAX));
    }

    /// Adds another worker's figures.
    pub fn merge(&mut self, other: &OpResult) {
        self.count += other.count;
        for (status, n) in other.statuses.iter() {
            self.statuses.add(status, *n);
        }
        self.latency_us.add(&other.latency_us).expect("histograms share bounds");
    }
}

impl Default for OpResult {
    fn default() -> OpResult {
        OpResult::new()
    }
}

/// The operations a run reports, in display order; a [`Tally`] slot each.
pub const OPCODES: [Opcode; 5] = [Opcode::Grab, Opcode::Open, Opcode::Create, Opcode::Query, Opcode::Ping];

/// The [`OPCODES`] slot of an opcode the load generator sends.
pub const fn slot_of(opcode: Opcode) -> usize {
    match opcode {
        Opcode::Grab => 0,
        Opcode::Open => 1,
        Opcode::Create => 2,
        Opcode::Query => 3,
        _ => 4,
    }
}

/// A worker's answers as they arrive, in the form cheapest to add to: one
/// slot per operation (an index, not a map), and latencies gathered in runs of
/// equal values (a pipelined batch was written at one instant and its answers
/// are read at one instant, so most of a batch has one latency) that go into
/// the histogram with one call each. Folded into a [`Recorder`] at the end.
#[derive(Debug)]
pub struct Tally {
    ops: Vec<OpResult>,
    /// Per slot: the latency of the current run and its length.
    runs: [(u64, u64); OPCODES.len()],
}

impl Default for Tally {
    fn default() -> Tally {
        Tally { ops: OPCODES.iter().map(|_| OpResult::new()).collect(), runs: [(0, 0); OPCODES.len()] }
    }
}

impl Tally {
    /// Counts one answer of operation `slot` (see [`slot_of`]).
    pub fn record(&mut self, slot: usize, status: Status, latency_us: u64) {
        let op = &mut self.ops[slot];
        op.count += 1;
        op.statuses.add(status, 1);
        let run = &mut self.runs[slot];
        if run.0 == latency_us {
            run.1 += 1;
        } else {
            if run.1 > 0 {
                op.latency_us.saturating_record_n(run.0.clamp(1, LATENCY_US_MAX), run.1);
            }
            *run = (latency_us, 1);
        }
    }

    /// Adds everything counted to `recorder`.
    pub fn fold_into(mut self, recorder: &mut Recorder) {
        for (slot, op) in self.ops.iter_mut().enumerate() {
            let (latency_us, n) = self.runs[slot];
            if n > 0 {
                op.latency_us.saturating_record_n(latency_us.clamp(1, LATENCY_US_MAX), n);
            }
        }
        for (opcode, op) in OPCODES.iter().zip(&self.ops) {
            if op.count > 0 {
                recorder.ops.entry(*opcode).or_default().merge(op);
            }
        }
    }
}

/// One worker's figures; merged into a [`RunResult`].
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    /// Per operation.
    pub ops: BTreeMap<Opcode, OpResult>,
    /// Answers per whole second of the measured period (index = second).
    pub per_second: Vec<u64>,
    /// Money-check failures, each described in a sentence.
    pub violations: Violations,
    /// Envelopes whose QUERY was compared with what the worker saw.
    pub envelopes_verified: u64,
    /// Envelopes of the final sample the server no longer held (not_found)
    /// after their expiry: evicted, so neither verified nor a violation.
    pub envelopes_unverifiable: u64,
    /// Envelopes created (CREATE answered OK) over the whole run.
    pub envelopes_created: u64,
    /// The status of a CREATE the server refused, if any was.
    pub create_refused: Option<Status>,
    /// Measured OPENs answered ok that repeated a paid share (not shares paid).
    pub repeated_paid: u64,
    /// Gaps in the workers' loops during the measured period.
    pub stalls: Stalls,
    /// The same, per core (a worker's core and its loop's gaps).
    pub stalls_by_core: Vec<(usize, Stalls)>,
    /// `--scenario hiccup`: per core, how often it ran slow.
    pub slowness_by_core: Vec<(usize, SlownessSummary)>,
    /// Open loop: connections that reached their depth with requests due.
    pub depth_limited: DepthLimited,
    /// Open loop: requests due in the measured period that were never sent
    /// (the backlog outlasted the grace after the end, or the workload had
    /// nothing left to send).
    pub lapsed: u64,
}

/// Open loop: how often, and how long, a connection had every slot taken
/// while requests fell due. Those requests wait for answers to free a slot,
/// so they are late; a figure here means the server (or the path to it) fell
/// behind, or `--depth` is too small for the rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DepthLimited {
    /// Times a connection reached its depth with requests due.
    pub episodes: u64,
    /// Time spent so, summed over connections, nanoseconds.
    pub total_ns: u64,
}

impl Recorder {
    /// Records one answer at `second` of the measured period.
    pub fn record(&mut self, opcode: Opcode, status: Status, latency_us: u64, second: usize) {
        self.ops.entry(opcode).or_default().record(status, latency_us);
        self.count_second(second, 1);
    }

    /// Counts `n` answers at `second` of the measured period for the
    /// per-second throughput (their operations go through a [`Tally`]).
    pub fn count_second(&mut self, second: usize, n: u64) {
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, 0);
        }
        self.per_second[second] += n;
    }

    /// Adds another worker's figures.
    pub fn merge(&mut self, other: &Recorder) {
        for (opcode, op) in &other.ops {
            self.ops.entry(*opcode).or_default().merge(op);
        }
        if self.per_second.len() < other.per_second.len() {
            self.per_second.resize(other.per_second.len(), 0);
        }
        for (i, n) in other.per_second.iter().enumerate() {
            self.per_second[i] += n;
        }
        self.violations.merge(&other.violations);
        self.envelopes_verified += other.envelopes_verified;
        self.envelopes_unverifiable += other.envelopes_unverifiable;
        self.envelopes_created += other.envelopes_created;
        self.create_refused = self.create_refused.or(other.create_refused);
        self.repeated_paid += other.repeated_paid;
        self.stalls.merge(&other.stalls);
        self.stalls_by_core.extend(other.stalls_by_core.iter().cloned());
        self.slowness_by_core.extend(other.slowness_by_core.iter().copied());
        self.depth_limited.episodes += other.depth_limited.episodes;
        self.depth_limited.total_ns += other.depth_limited.total_ns;
        self.lapsed += other.lapsed;
    }
}

/// The settings a run used, echoed in every report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunSettings {
    /// Scenario name.
    pub scenario: String,
    /// Server main address.
    pub server: String,
    /// "closed" or "open".
    pub load_model: String,
    /// Target requests per second (open loop), 0 for closed loop.
    pub rate: u64,
    /// Cores the load generator ran on.
    pub cores: Vec<usize>,
    /// Connections per shard per worker.
    pub connections: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// Measured seconds.
    pub duration_secs: f64,
    /// Warm-up seconds (not measured).
    pub warmup_secs: f64,
    /// Shards of the server.
    pub shards: u16,
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// How the run was set up.
    pub settings: RunSettings,
    /// Merged figures of every worker.
    pub recorder: Recorder,
    /// Length of the measured period, seconds: the requests that started in
    /// it are the ones counted.
    pub elapsed_secs: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_folds_into_the_same_figures_as_answer_by_answer_recording() {
        // Runs of equal latencies (a pipelined batch) and changes between them,
        // interleaved across operations.
        let answers: Vec<(Opcode, Status, u64)> = [
            (Opcode::Grab, Status::Ok, 40),
            (Opcode::Grab, Status::Ok, 40),
            (Opcode::Open, Status::Ok, 40),
            (Opcode::Grab, Status::SoldOut, 40),
            (Opcode::Grab, Status::Ok, 900),
            (Opcode::Open, Status::Ok, 41),
            (Opcode::Open, Status::Ok, 41),
            (Opcode::Ping, Status::Ok, 0),
            (Opcode::Grab, Status::Ok, 40),
        ]
        .into_iter()
        .collect();
        let mut tally = Tally::default();
        let mut expected = Recorder::default();
        for (opcode, status, latency) in &answers {
            tally.record(slot_of(*opcode), *status, *latency);
            expected.record(*opcode, *status, *latency, 0);
        }
        let mut folded = Recorder::default();
        tally.fold_into(&mut folded);
        assert_eq!(folded.ops.keys().collect::<Vec<_>>(), expected.ops.keys().collect::<Vec<_>>());
        for (opcode, want) in &expected.ops {
            let got = &folded.ops[opcode];
            assert_eq!(got.count, want.count, "{opcode}");
            assert_eq!(got.statuses, want.statuses, "{opcode}");
            assert_eq!(got.latency_us, want.latency_us, "{opcode}: every latency, runs included");
        }
        assert_eq!(folded.ops[&Opcode::Grab].latency_us.len(), 5);
        assert_eq!(folded.ops[&Opcode::Grab].statuses.get(&Status::SoldOut), Some(&1));
        assert_eq!(folded.ops[&Opcode::Ping].latency_us.min(), 1, "0 µs is kept as 1, not dropped");
        assert!(!folded.ops.contains_key(&Opcode::Create), "operations never answered are left out");
    }

    /// An open loop far behind its schedule waits longer than a minute: its
    /// latencies are kept as they were, up to the longest run the flags
    /// allow, not cut to a round figure.
    #[test]
    fn the_longest_latency_a_run_allows_is_kept() {
        let mut op = OpResult::new();
        let two_hours_us = 2 * 3_600 * 1_000_000;
        op.record(Status::Ok, 10);
        op.record(Status::Ok, two_hours_us);
        let max = op.latency_us.max();
        assert!(max.abs_diff(two_hours_us) <= two_hours_us / 1_000, "max {max} µs");
        let longest = (crate::args::DURATION_SECS_MAX + crate::args::WARMUP_SECS_MAX) * 1_000_000;
        op.record(Status::Ok, longest);
        assert!(op.latency_us.max() >= longest, "{} < {longest}", op.latency_us.max());
    }
}
