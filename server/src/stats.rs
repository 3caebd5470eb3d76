//! STATS on the binary port: the shard's figures, most of which the metrics
//! endpoint publishes too (`docs/PROTOCOL.md` section 7.7 lists them).
//!
//! The answer is read straight from the shard's cells, so it is exact at the
//! moment of the request, where the endpoint may be a tick behind. It is
//! written into the output buffer piece by piece; nothing is allocated.

use hongbao_protocol::body::{
    FixedBody, HistogramHeader, HistogramKind, RequestCount, StatsResponse, StatsTables, OPCODE_OTHER,
};
use hongbao_protocol::codec::ResponseBuilder;
use hongbao_protocol::limits::{MAX_STATS_BUCKET_BOUNDS, MAX_STATS_HISTOGRAMS, MAX_STATS_REQUEST_COUNTS};
use hongbao_protocol::Status;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::IntoBytes;

use crate::counters::{
    slot_opcode, LocalHistogram, LocalLatency, LocalRequests, LATENCY_BUCKETS_US, OPS, STATUSES,
};
use crate::engine::Engine;
use crate::shard::Shard;

// Everything the shard counts fits the protocol's limits, whatever it holds:
// every (slot, status) pair, the bounds, a histogram per slot and the log's.
const _: () = assert!(OPS * STATUSES <= MAX_STATS_REQUEST_COUNTS as usize);
const _: () = assert!(LATENCY_BUCKETS_US.len() <= MAX_STATS_BUCKET_BOUNDS as usize);
const HISTOGRAMS_MAX: usize = OPS + 1;
const _: () = assert!(HISTOGRAMS_MAX <= MAX_STATS_HISTOGRAMS as usize);

/// Appends the STATS answer (status OK) of `shard` to `out`.
pub fn answer(shard: &Shard, engine: &Engine, opcode: u8, id: u64, out: &mut Vec<u8>) {
    let c = &shard.counters;
    let empty = LocalHistogram::default();
    let log_sync = shard.log_sync_latency().unwrap_or(&empty);
    let fixed = fixed_part(shard, engine);

    let start = out.len();
    let response = ResponseBuilder::begin(out, opcode, id, Status::Ok);
    // The tables are written in the order, and with the lengths, `fixed`
    // announces: both walk the same cells, which nothing changes meanwhile.
    out.extend_from_slice(fixed.as_bytes());
    for (op, status, count) in counts_in_wire_order(&c.answers) {
        let entry = RequestCount {
            opcode: op,
            reserved0: 0,
            status: U16::new(status as u16),
            reserved1: U32::new(0),
            count: U64::new(count),
        };
        out.extend_from_slice(entry.as_bytes());
    }
    for bound in LATENCY_BUCKETS_US {
        out.extend_from_slice(U64::new(bound).as_bytes());
    }
    for (op, histogram) in latency_in_wire_order(&c.latency) {
        write_histogram(out, HistogramKind::Request, op, histogram);
    }
    write_histogram(out, HistogramKind::LogSync, 0, log_sync);
    response.finish(out);
    let body_len = out.len() - start - hongbao_protocol::HEADER_LEN;
    debug_assert_eq!(body_len, StatsResponse::SIZE + StatsTables::wire_len(&fixed));
}

/// The fixed part, with the lengths of the tables that will follow it.
fn fixed_part(shard: &Shard, engine: &Engine) -> StatsResponse {
    let c = &shard.counters;
    let g = shard.gauges(engine);
    let e = engine.counters();
    let len = |n: usize| U16::new(u16::try_from(n).expect("within the STATS limits (asserted above)"));
    StatsResponse {
        shard_id: U16::new(shard.id),
        shard_count: U16::new(shard.shard_count),
        reserved: U32::new(0),
        uptime_ms: U64::new(shard.started.elapsed().as_millis() as u64),
        connections: U64::new(g.connections),
        envelopes: U64::new(g.envelopes),
        envelopes_max: U64::new(g.envelopes_max),
        claims: U64::new(g.claims),
        claims_max: U64::new(g.claims_max),
        requests: U64::new(c.requests.get()),
        forwarded_out: U64::new(g.forwarded_out),
        forwarded_in: U64::new(g.forwarded_in),
        creates: U64::new(e.creates),
        opens: U64::new(e.opens),
        expired: U64::new(e.expired),
        bytes_in: U64::new(g.bytes_in),
        bytes_out: U64::new(g.bytes_out),
        connections_refused: U64::new(g.connections_refused),
        log_syncs: U64::new(g.log_syncs),
        memory_bytes: U64::new(crate::metrics::memory_bytes()),
        request_counts_len: len(counts_in_wire_order(&c.answers).count()),
        bucket_bounds_len: len(LATENCY_BUCKETS_US.len()),
        histograms_len: len(latency_in_wire_order(&c.latency).count() + 1),
        reserved1: U16::new(0),
    }
}

/// Slots in the order of their wire opcode: "other" (0x00) first, then the
/// table, which ascends (checked by a test in `counters`).
fn slots_in_wire_order() -> impl Iterator<Item = (u8, usize)> {
    std::iter::once((OPCODE_OTHER, OPS - 1))
        .chain((0..OPS - 1).map(|slot| (slot_opcode(slot).map_or(OPCODE_OTHER, |op| op as u8), slot)))
}

/// The answered (opcode, status) pairs, in increasing order.
fn counts_in_wire_order(answers: &LocalRequests) -> impl Iterator<Item = (u8, Status, u64)> + '_ {
    slots_in_wire_order().flat_map(move |(op, slot)| {
        answers.row(slot).filter(|(_, count)| *count > 0).map(move |(status, count)| (op, status, count))
    })
}

/// The opcodes with at least one request timed, in increasing order.
fn latency_in_wire_order(latency: &LocalLatency) -> impl Iterator<Item = (u8, &LocalHistogram)> + '_ {
    slots_in_wire_order().map(|(op, slot)| (op, latency.slot(slot))).filter(|(_, h)| h.count() > 0)
}

fn write_histogram(out: &mut Vec<u8>, kind: HistogramKind, opcode: u8, histogram: &LocalHistogram) {
    let header = HistogramHeader {
        kind: kind as u8,
        opcode,
        reserved0: U16::new(0),
        reserved1: U32::new(0),
        sum_us: U64::new(histogram.sum_us()),
    };
    out.extend_from_slice(header.as_bytes());
    for bucket in histogram.buckets() {
        out.extend_from_slice(U64::new(bucket).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::counters::op_slot;

    #[test]
    fn tables_come_in_wire_order_with_other_first() {
        let answers = LocalRequests::default();
        for (opcode, status) in [(0x20, Status::Ok), (0x7f, Status::MalformedFrame), (0x11, Status::SoldOut)]
        {
            answers.record(opcode, status);
        }
        answers.record(0x11, Status::Ok);
        let found: Vec<(u8, Status, u64)> = counts_in_wire_order(&answers).collect();
        let expected = [
            (OPCODE_OTHER, Status::MalformedFrame, 1),
            (0x11, Status::Ok, 1),
            (0x11, Status::SoldOut, 1),
            (0x20, Status::Ok, 1),
        ];
        assert_eq!(found, expected);

        let latency = LocalLatency::default();
        for opcode in [0x20, 0x00, 0x01] {
            latency.slot(op_slot(opcode)).record(Duration::from_micros(5));
        }
        let found: Vec<u8> = latency_in_wire_order(&latency).map(|(op, _)| op).collect();
        assert_eq!(found, [OPCODE_OTHER, 0x01, 0x20]);
    }
}
