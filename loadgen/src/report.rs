//! What a run measured, in the forms people and scripts read: a [`Summary`]
//! computed once from a [`RunResult`], then printed as a text table ([`text`]),
//! written as JSON ([`to_json`]) or drawn ([`crate::plot`]).
//!
//! Every rate divides by the length of the measured period (`elapsed_secs`):
//! the requests counted are those that started in it (fell due, or were
//! written), however late their answers came, so a run whose answers
//! straggled past its end neither looks faster nor drops its slowest
//! requests. A run with no measured time reports rates of 0, never NaN or
//! infinity, so the JSON stays valid.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use hongbao_protocol::{Opcode, Status};
use serde::Serializer;

use crate::results::{OpResult, RunResult, RunSettings, LATENCY_US_MAX};
use crate::slowness::SlownessSummary;
use crate::stalls::StallSummary;

/// Most violation messages [`text`] prints; the rest are counted, not shown.
pub const VIOLATION_LINES_MAX: usize = 20;

/// Deepest percentile the latency curve reaches, in nines (5 = 99.999 %).
pub const CURVE_NINES_MAX: f64 = 5.0;

/// Points per nine on the latency curve (the curve has 5 × this + 1 points).
pub const CURVE_POINTS_PER_NINE: u32 = 20;

/// Latency figures of one histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Highest recorded value (within histogram precision).
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Reads the figures of a histogram; all zero when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let latency = Latency {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: finite_or_zero(histogram.mean()),
        };
        debug_assert!(latency.p50 <= latency.p90 && latency.p90 <= latency.p99);
        debug_assert!(latency.p99 <= latency.p999 && latency.p999 <= latency.max);
        latency
    }
}

/// One point of a latency percentile curve.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CurvePoint {
    /// Percentile as a count of nines: `-log10(1 - quantile)`; 0 is the
    /// minimum, 1 is 90 %, 2 is 99 %, 3 is 99.9 %.
    pub nines: f64,
    /// The same as a percentile (0 to 100).
    pub percentile: f64,
    /// Latency at that percentile, in microseconds (at least 1).
    pub latency_us: u64,
}

/// Figures of one operation, or of all operations together.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpSummary {
    /// Operation name ("grab", "open", ...) or "all"; the JSON key, not a field.
    #[serde(skip)]
    pub name: &'static str,
    /// Answers measured.
    pub count: u64,
    /// Answers per measured second.
    pub ops_per_sec: f64,
    /// Answers by status name, in status-table order.
    #[serde(serialize_with = "serialize_pairs")]
    pub statuses: Vec<(&'static str, u64)>,
    /// Latency percentiles, max and mean.
    pub latency_us: Latency,
    /// Latency percentile curve, as [`crate::plot`] draws it (so the plot
    /// can be redrawn from the JSON); empty when `count` is 0.
    #[serde(rename = "latency_curve")]
    pub curve: Vec<CurvePoint>,
}

impl OpSummary {
    fn of(name: &'static str, op: &OpResult, elapsed_secs: f64) -> OpSummary {
        let statuses: Vec<(&'static str, u64)> = op.statuses.iter().map(|(s, n)| (s.name(), *n)).collect();
        debug_assert_eq!(statuses.iter().map(|(_, n)| n).sum::<u64>(), op.count);
        OpSummary {
            name,
            count: op.count,
            ops_per_sec: per_sec(op.count, elapsed_secs),
            statuses,
            latency_us: Latency::of(&op.latency_us),
            curve: curve(&op.latency_us),
        }
    }

    /// Answers with `status`.
    pub fn status_count(&self, status: Status) -> u64 {
        self.statuses.iter().find(|(name, _)| *name == status.name()).map_or(0, |(_, n)| *n)
    }
}

/// Everything a report shows about one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// How the run was set up.
    pub settings: RunSettings,
    /// Length of the measured period, seconds.
    pub elapsed_secs: f64,
    /// Answers of every operation.
    pub count: u64,
    /// Answers of every operation per measured second.
    pub ops_per_sec: f64,
    /// GRAB and OPEN answers (any status) per measured second.
    pub grab_open_per_sec: f64,
    /// OPEN answers with status ok (shares paid) per measured second.
    pub shares_paid_per_sec: f64,
    /// Answers that arrived inside the measured period (to requests of any
    /// time) per measured second: what the server delivered while the load
    /// ran. In the open loop `ops_per_sec` is the schedule's rate whenever
    /// every request gets an answer, however late; this one falls below it
    /// when the server cannot keep up.
    pub answered_per_sec: f64,
    /// Open loop: requests due in the measured period never sent, because
    /// the backlog was still unsent long after the end (or the workload had
    /// nothing left to send). Not in `count`.
    pub lapsed: u64,
    /// Latency of every operation together.
    pub latency_us: Latency,
    /// Answers of every operation by status name.
    #[serde(serialize_with = "serialize_pairs")]
    pub statuses: Vec<(&'static str, u64)>,
    /// Failed money checks.
    pub violations: u64,
    /// What the failed money checks saw: the first
    /// [`crate::violations::VIOLATION_MESSAGES_KEPT`] of them.
    pub violation_messages: Vec<String>,
    /// Envelopes whose QUERY was compared with what the workers saw.
    pub envelopes_verified: u64,
    /// Envelopes of the final sample evicted after their expiry, unchecked.
    pub envelopes_unverifiable: u64,
    /// Envelopes created over the whole run (warm-up included).
    pub envelopes_created: u64,
    /// Answers (every operation) per second of the measured period.
    pub per_second: Vec<u64>,
    /// Gaps in the load generator's loops (every worker together): time the
    /// generator itself did not run, so every request due then was late.
    pub stalls: StallSummary,
    /// The same per core, in core order.
    pub stalls_by_core: Vec<CoreStalls>,
    /// Open loop: times a connection had every slot taken while requests
    /// fell due, and the time it spent so (summed over connections).
    pub depth_limited: DepthLimitedSummary,
    /// Per operation, in opcode order; serialized as an object keyed by name.
    #[serde(serialize_with = "serialize_ops")]
    pub ops: Vec<OpSummary>,
    /// Every operation together, as one row (name "all"); in JSON its figures
    /// are the top-level `count`, `ops_per_sec`, `statuses`, `latency_us`.
    #[serde(skip)]
    pub all: OpSummary,
}

impl Summary {
    /// The figures of `opcode`, if the run had any answer to it.
    pub fn op(&self, opcode: Opcode) -> Option<&OpSummary> {
        self.ops.iter().find(|op| op.name == opcode.name())
    }
}

/// Open loop: how often connections were held back by their depth.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct DepthLimitedSummary {
    /// Times a connection reached its depth with requests due.
    pub episodes: u64,
    /// Time spent so, summed over connections, in milliseconds.
    pub total_ms: f64,
}

/// Stall figures of one core's worker.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CoreStalls {
    /// The core.
    pub core: usize,
    /// Its worker's loop gaps.
    #[serde(flatten)]
    pub stalls: StallSummary,
    /// `--scenario hiccup`: how often the core ran slow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowness: Option<SlownessSummary>,
}

/// Computes the figures of a run.
pub fn summary(result: &RunResult) -> Summary {
    let elapsed_secs = result.elapsed_secs;
    let recorder = &result.recorder;
    let mut all = OpResult::new();
    let mut ops = Vec::with_capacity(recorder.ops.len());
    for (opcode, op) in &recorder.ops {
        all.merge(op);
        ops.push(OpSummary::of(opcode.name(), op, elapsed_secs));
    }
    let all = OpSummary::of("all", &all, elapsed_secs);
    assert_eq!(all.count, ops.iter().map(|op| op.count).sum::<u64>());

    let count_of = |opcode: Opcode| recorder.ops.get(&opcode).map_or(0, |op| op.count);
    // A repeated OPEN answers ok with the share already paid: not a new one.
    let paid =
        recorder.ops.get(&Opcode::Open).and_then(|op| op.statuses.get(&Status::Ok)).copied().unwrap_or(0)
            - recorder.repeated_paid;
    Summary {
        settings: result.settings.clone(),
        elapsed_secs,
        count: all.count,
        ops_per_sec: all.ops_per_sec,
        grab_open_per_sec: per_sec(count_of(Opcode::Grab) + count_of(Opcode::Open), elapsed_secs),
        shares_paid_per_sec: per_sec(paid, elapsed_secs),
        answered_per_sec: per_sec(recorder.per_second.iter().sum(), elapsed_secs),
        lapsed: recorder.lapsed,
        latency_us: all.latency_us,
        statuses: all.statuses.clone(),
        violations: recorder.violations.count(),
        violation_messages: recorder.violations.messages().to_vec(),
        envelopes_verified: recorder.envelopes_verified,
        envelopes_unverifiable: recorder.envelopes_unverifiable,
        envelopes_created: recorder.envelopes_created,
        per_second: recorder.per_second.clone(),
        stalls: recorder.stalls.summary(),
        depth_limited: DepthLimitedSummary {
            episodes: recorder.depth_limited.episodes,
            total_ms: recorder.depth_limited.total_ns as f64 / 1e6,
        },
        stalls_by_core: {
            let mut by_core: Vec<CoreStalls> = recorder
                .stalls_by_core
                .iter()
                .map(|(core, stalls)| CoreStalls {
                    core: *core,
                    stalls: stalls.summary(),
                    slowness: recorder.slowness_by_core.iter().find(|(c, _)| c == core).map(|(_, s)| *s),
                })
                .collect();
            by_core.sort_by_key(|c| c.core);
            by_core
        },
        ops,
        all,
    }
}

/// The summary as JSON (see [`Summary`] for the fields).
pub fn to_json(summary: &Summary) -> serde_json::Value {
    let mut value = serde_json::to_value(summary).expect("a summary has string keys and finite numbers");
    debug_assert!(value["ops_per_sec"].is_number() && value["violations"].is_number());
    // The plot's "all" line, beside the top-level latency_us it goes with.
    value["latency_curve"] = serde_json::to_value(&summary.all.curve).expect("a curve is numbers only");
    value
}

/// The summary as a table for people: one row per operation, then totals,
/// then the money checks.
pub fn text(summary: &Summary) -> String {
    let mut out = String::new();
    let s = &summary.settings;
    if s.scenario == crate::args::Scenario::Hiccup.name() {
        let _ = writeln!(
            out,
            "hiccup: {:.1} s measured on {} cores: gaps and slow stretches of a loop running a fixed chunk of work",
            summary.elapsed_secs,
            s.cores.len()
        );
        for core in &summary.stalls_by_core {
            let _ = writeln!(out, "core {:<3} {}", core.core, stall_line(&core.stalls));
            if let Some(slow) = &core.slowness {
                let _ = writeln!(out, "core {:<3} {}", core.core, slowness_line(slow));
            }
        }
        return out;
    }
    let _ = writeln!(
        out,
        "{} ({} loop{}): {:.1} s measured, {} cores, {} connections x {} deep per shard, {} shards",
        s.scenario,
        s.load_model,
        if s.rate > 0 { format!(", target {}/s", group(s.rate)) } else { String::new() },
        summary.elapsed_secs,
        s.cores.len(),
        s.connections,
        s.depth,
        s.shards,
    );
    let _ = writeln!(
        out,
        "{:<7} {:>12} {:>13} {:>9} {:>9} {:>9} {:>9} {:>9}  statuses",
        "op", "ops/s", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    for op in summary.ops.iter().chain(std::iter::once(&summary.all)) {
        row(&mut out, op);
    }
    let _ = writeln!(
        out,
        "grab+open: {}/s   shares paid: {}/s   all answers: {}/s",
        group_f(summary.grab_open_per_sec),
        group_f(summary.shares_paid_per_sec),
        group_f(summary.ops_per_sec),
    );
    let _ = writeln!(out, "generator stalls: {}", stall_line(&summary.stalls));
    let _ = writeln!(
        out,
        "generator busy: {:.1}% of its loop's time in turns that read answers or sent requests",
        100.0 * summary.stalls.busy_fraction
    );
    if s.rate > 0 {
        let _ = writeln!(
            out,
            "answered while the load ran: {}/s of {}/s due",
            group_f(summary.answered_per_sec),
            group_f(per_sec(summary.count + summary.lapsed, summary.elapsed_secs)),
        );
        if summary.lapsed > 0 {
            let _ = writeln!(
                out,
                "NEVER SENT: {} requests due in the period (still unsent {} after the end: the server fell that far behind; or the workload ran dry); the figures above leave them out",
                group(summary.lapsed),
                duration(crate::driver::AFTER_END.as_micros() as u64),
            );
        }
        let d = &summary.depth_limited;
        let _ = writeln!(
            out,
            "depth limit: connections had all {} slots taken with requests due {} times ({} in all)",
            s.depth,
            group(d.episodes),
            duration((d.total_ms * 1e3) as u64),
        );
    }
    violations(&mut out, summary);
    out
}

/// "3 gaps of 1 ms or more (7.20ms in all, 0.07% of the time), longest 4.10ms;
/// 41 of 100 µs or more; 0 of 10 ms or more".
fn stall_line(s: &StallSummary) -> String {
    format!(
        "{} gaps of 1 ms or more ({} in all, {:.2}% of the time), longest {}; {} of 100 µs or more; {} of 10 ms or more",
        group(s.over_1ms.count),
        duration(s.over_1ms.total_us),
        100.0 * s.stalled_fraction(),
        duration(s.max_us),
        group(s.over_100us.count),
        group(s.over_10ms.count),
    )
}

/// "slow: 13.3% of 1 ms windows (1,330 of 9,999) ran a fixed chunk at 2x
/// its fast time (16.0µs) or slower; longest stretch 103 ms".
fn slowness_line(s: &SlownessSummary) -> String {
    format!(
        "slow: {:.1}% of 1 ms windows ({} of {}) ran a fixed chunk at {}x its fast time ({:.1}µs) or slower; longest stretch {} ms",
        100.0 * s.slow_fraction,
        group(s.slow_windows),
        group(s.windows),
        crate::slowness::SLOW_FACTOR,
        s.chunk_fast_ns as f64 / 1e3,
        group(s.longest_slow_ms),
    )
}

/// The live progress line printed once a second while a run goes on.
pub fn progress_line(second: u64, answers_in_last_second: u64, total: u64) -> String {
    format!("[{second:>4} s] {:>11} answers/s  {:>14} total", group(answers_in_last_second), group(total))
}

fn row(out: &mut String, op: &OpSummary) {
    let l = &op.latency_us;
    let statuses: Vec<String> = op.statuses.iter().map(|(name, n)| format!("{name} {}", group(*n))).collect();
    let _ = writeln!(
        out,
        "{:<7} {:>12} {:>13} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
        op.name,
        group_f(op.ops_per_sec),
        group(op.count),
        duration(l.p50),
        duration(l.p90),
        duration(l.p99),
        duration(l.p999),
        duration(l.max),
        statuses.join(", "),
    );
}

fn violations(out: &mut String, summary: &Summary) {
    let messages = &summary.violation_messages;
    let mut verified = format!("{} envelopes verified", group(summary.envelopes_verified));
    if summary.envelopes_unverifiable > 0 {
        let evicted = group(summary.envelopes_unverifiable);
        verified.push_str(&format!(" ({evicted} more unverifiable: evicted after their expiry)"));
    }
    if summary.violations == 0 {
        let _ = writeln!(out, "money checks: 0 violations, {verified}");
        return;
    }
    let _ = writeln!(out, "money checks: {} VIOLATIONS, {verified}:", group(summary.violations));
    for message in messages.iter().take(VIOLATION_LINES_MAX) {
        let _ = writeln!(out, "  {message}");
    }
    let shown = messages.len().min(VIOLATION_LINES_MAX) as u64;
    if summary.violations > shown {
        let _ = writeln!(out, "  ... and {} more", group(summary.violations - shown));
    }
}

/// The latency curve of a histogram at evenly spaced nines, from the minimum
/// (0 nines) to [`CURVE_NINES_MAX`]; past the histogram's last sample the
/// curve stays at its maximum.
fn curve(histogram: &Histogram<u64>) -> Vec<CurvePoint> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let steps = CURVE_NINES_MAX as u32 * CURVE_POINTS_PER_NINE;
    let points: Vec<CurvePoint> = (0..=steps)
        .map(|i| {
            let nines = f64::from(i) / f64::from(CURVE_POINTS_PER_NINE);
            let quantile = 1.0 - 10f64.powf(-nines);
            let latency_us = histogram.value_at_quantile(quantile).clamp(1, LATENCY_US_MAX);
            CurvePoint { nines, percentile: quantile * 100.0, latency_us }
        })
        .collect();
    debug_assert!(points.windows(2).all(|w| w[0].latency_us <= w[1].latency_us));
    points
}

fn per_sec(count: u64, elapsed_secs: f64) -> f64 {
    if elapsed_secs > 0.0 && elapsed_secs.is_finite() {
        count as f64 / elapsed_secs
    } else {
        0.0
    }
}

fn finite_or_zero(value: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        0.0
    }
}

/// A latency in microseconds with a unit people read at a glance:
/// "850µs", "1.25ms", "12.5ms", "1.50s".
pub fn duration(us: u64) -> String {
    match us {
        0..=999 => format!("{us}µs"),
        1_000..=9_999 => format!("{:.2}ms", us as f64 / 1e3),
        10_000..=999_999 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// An integer with thousands separators: 1234567 -> "1,234,567".
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate rounded to a whole number, with thousands separators.
fn group_f(rate: f64) -> String {
    group(finite_or_zero(rate).max(0.0).round() as u64)
}

fn serialize_pairs<S: Serializer>(pairs: &[(&'static str, u64)], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(pairs.iter().map(|(name, n)| (*name, *n)))
}

fn serialize_ops<S: Serializer>(ops: &[OpSummary], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(ops.iter().map(|op| (op.name, op)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Recorder;

    fn settings() -> RunSettings {
        RunSettings {
            scenario: "storm".to_string(),
            server: "127.0.0.1:7700".to_string(),
            load_model: "closed".to_string(),
            rate: 0,
            cores: vec![0, 1],
            connections: 2,
            depth: 8,
            duration_secs: 10.0,
            warmup_secs: 1.0,
            shards: 2,
        }
    }

    fn result(recorder: Recorder, elapsed_secs: f64) -> RunResult {
        RunResult { settings: settings(), recorder, elapsed_secs }
    }

    /// Within the 3 significant digits the histograms keep.
    fn near(actual: u64, expected: u64) -> bool {
        actual.abs_diff(expected) <= expected / 500 + 1
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut recorder = Recorder::default();
        for us in 1..=1000 {
            recorder.record(Opcode::Grab, Status::Ok, us, 0);
        }
        let summary = summary(&result(recorder, 1.0));
        let l = summary.op(Opcode::Grab).unwrap().latency_us;
        assert!(near(l.p50, 500), "{l:?}");
        assert!(near(l.p90, 900), "{l:?}");
        assert!(near(l.p99, 990), "{l:?}");
        assert!(near(l.p999, 999), "{l:?}");
        assert!(near(l.max, 1000), "{l:?}");
        assert!((l.mean - 500.5).abs() < 1.0, "{l:?}");
        assert_eq!(summary.latency_us, l);
        let curve = &summary.op(Opcode::Grab).unwrap().curve;
        assert_eq!(curve.len(), 101);
        assert_eq!(curve[0].latency_us, 1);
        assert!(near(curve[20].latency_us, 900));
        assert!(near(curve[100].latency_us, 1000));
    }

    #[test]
    fn merged_recorders_add_up() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for us in 1..=100 {
            a.record(Opcode::Grab, Status::Ok, us, 0);
            b.record(Opcode::Grab, Status::SoldOut, 1000 + us, 1);
            b.record(Opcode::Open, Status::Ok, 50, 2);
        }
        a.violations.push("envelope 7: paid 101 of 100".to_string());
        a.envelopes_verified = 3;
        b.envelopes_verified = 4;
        b.envelopes_unverifiable = 2;
        a.merge(&b);
        let summary = summary(&result(a, 4.0));

        let grab = summary.op(Opcode::Grab).unwrap();
        assert_eq!(grab.count, 200);
        assert_eq!(grab.status_count(Status::Ok), 100);
        assert_eq!(grab.status_count(Status::SoldOut), 100);
        assert!(near(grab.latency_us.p50, 100));
        assert!(near(grab.latency_us.max, 1100));
        assert_eq!(summary.count, 300);
        assert_eq!(summary.per_second, vec![100, 100, 100]);
        assert_eq!(summary.violations, 1);
        assert_eq!(summary.envelopes_verified, 7);
        assert_eq!(summary.envelopes_unverifiable, 2);
        assert_eq!(summary.statuses, vec![("ok", 200), ("sold_out", 100)]);
    }

    #[test]
    fn rates_divide_by_elapsed_seconds() {
        let mut recorder = Recorder::default();
        for i in 0..1000 {
            recorder.record(Opcode::Grab, Status::Ok, 10, 0);
            let status = if i % 4 == 0 { Status::NoReservation } else { Status::Ok };
            recorder.record(Opcode::Open, status, 10, 0);
        }
        for _ in 0..500 {
            recorder.record(Opcode::Query, Status::Ok, 10, 1);
        }
        let summary = summary(&result(recorder.clone(), 2.5));
        assert_eq!(summary.ops_per_sec, 2500.0 / 2.5);
        assert_eq!(summary.grab_open_per_sec, 2000.0 / 2.5);
        assert_eq!(summary.shares_paid_per_sec, 750.0 / 2.5);
        assert_eq!(summary.op(Opcode::Query).unwrap().ops_per_sec, 500.0 / 2.5);

        let zero = super::summary(&result(recorder, 0.0));
        assert_eq!(zero.ops_per_sec, 0.0);
        assert_eq!(zero.grab_open_per_sec, 0.0);
    }

    #[test]
    fn json_has_the_documented_shape() {
        let mut recorder = Recorder::default();
        recorder.record(Opcode::Grab, Status::Ok, 120, 0);
        recorder.record(Opcode::Open, Status::Ok, 80, 0);
        let json = to_json(&summary(&result(recorder, 1.0)));
        for key in [
            "ops_per_sec",
            "violations",
            "grab_open_per_sec",
            "shares_paid_per_sec",
            "answered_per_sec",
            "lapsed",
            "elapsed_secs",
        ] {
            assert!(json[key].is_number(), "{key}: {}", json[key]);
        }
        assert!(json["settings"].is_object());
        assert_eq!(json["settings"]["scenario"], "storm");
        assert!(json["per_second"].is_array());
        assert!(json["violation_messages"].is_array());
        for key in ["p50", "p90", "p99", "p999", "max", "mean"] {
            assert!(json["latency_us"][key].is_number(), "{key}");
            assert!(json["ops"]["grab"]["latency_us"][key].is_number(), "{key}");
        }
        assert_eq!(json["ops"]["grab"]["count"], 1);
        let curve = json["ops"]["grab"]["latency_curve"].as_array().expect("the curve the plot draws");
        assert_eq!(curve.len(), (CURVE_NINES_MAX as usize) * CURVE_POINTS_PER_NINE as usize + 1);
        assert_eq!(
            (&curve[0]["nines"], &curve[0]["percentile"]),
            (&serde_json::json!(0.0), &serde_json::json!(0.0))
        );
        assert_eq!(curve[20]["percentile"], 90.0);
        assert!(curve.iter().all(|p| p["latency_us"] == 120), "one GRAB of 120 µs: {curve:?}");
        assert_eq!(json["ops"]["open"]["statuses"]["ok"], 1);
        assert!(json["ops"]["open"]["ops_per_sec"].is_number());
        assert!(json["ops"].get("all").is_none());
        // All operations' curve, as the plot's "all" line: the GRAB of 120 µs
        // and the OPEN of 80 µs together.
        let all = json["latency_curve"].as_array().expect("the plot's \"all\" curve");
        assert_eq!(all.len(), curve.len());
        assert_eq!(
            (&all[0]["latency_us"], &all[all.len() - 1]["latency_us"]),
            (&serde_json::json!(80), &serde_json::json!(120))
        );
        assert_eq!(json["violations"], 0);
    }

    #[test]
    fn empty_run_gives_zeros_not_nan() {
        let json = to_json(&summary(&result(Recorder::default(), 0.0)));
        assert_eq!(json["ops_per_sec"], 0.0);
        assert_eq!(json["latency_us"]["max"], 0);
        assert_eq!(json["ops"], serde_json::json!({}));
        assert!(!serde_json::to_string(&json).unwrap().contains("null"));
    }

    #[test]
    fn text_names_every_op_and_the_money_checks() {
        let mut recorder = Recorder::default();
        for opcode in [Opcode::Create, Opcode::Grab, Opcode::Open, Opcode::Query] {
            recorder.record(opcode, Status::Ok, 1500, 0);
        }
        recorder.envelopes_verified = 12;
        let out = text(&summary(&result(recorder.clone(), 1.0)));
        for name in ["create", "grab", "open", "query", "all"] {
            assert!(out.lines().any(|line| line.starts_with(name)), "{name} missing:\n{out}");
        }
        assert!(out.contains("1.50ms"), "{out}");
        assert!(out.contains("money checks: 0 violations, 12 envelopes verified"), "{out}");
        let mut evicted = recorder.clone();
        evicted.envelopes_unverifiable = 3;
        let out = text(&summary(&result(evicted, 1.0)));
        assert!(out.contains("12 envelopes verified (3 more unverifiable: evicted after"), "{out}");

        recorder.violations.extend((0..25).map(|i| format!("envelope {i}: sum differs")));
        let out = text(&summary(&result(recorder, 1.0)));
        assert!(out.contains("25 VIOLATIONS"), "{out}");
        assert!(out.contains("envelope 19:") && !out.contains("envelope 20:"), "{out}");
        assert!(out.contains("... and 5 more"), "{out}");
    }

    #[test]
    fn the_open_loop_tells_what_was_answered_while_it_ran_and_what_never_went() {
        // 4 s measured at 1,000/s due: 3,000 sent and answered, 1,000 lapsed;
        // 2,000 of the answers came in while the load ran.
        let mut recorder = Recorder::default();
        for i in 0..3_000 {
            recorder.ops.entry(Opcode::Ping).or_default().record(Status::Ok, 10);
            if i < 2_000 {
                recorder.count_second(i / 500, 1);
            }
        }
        recorder.lapsed = 1_000;
        let mut run = result(recorder, 4.0);
        run.settings.rate = 1_000;
        run.settings.load_model = "open".to_string();
        let summary = summary(&run);
        assert_eq!((summary.ops_per_sec, summary.answered_per_sec, summary.lapsed), (750.0, 500.0, 1_000));
        let out = text(&summary);
        assert!(out.contains("answered while the load ran: 500/s of 1,000/s due"), "{out}");
        assert!(out.contains("NEVER SENT: 1,000 requests due in the period"), "{out}");
        run.recorder.lapsed = 0;
        assert!(!text(&super::summary(&run)).contains("NEVER SENT"));
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(duration(850), "850µs");
        assert_eq!(duration(1_250), "1.25ms");
        assert_eq!(duration(12_500), "12.5ms");
        assert_eq!(duration(1_500_000), "1.50s");
        assert_eq!(
            progress_line(12, 184_233, 2_100_345),
            "[  12 s]     184,233 answers/s       2,100,345 total"
        );
    }
}
