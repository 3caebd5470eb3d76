//! STATS answers: the borrowed view a pipeline hands out ([`StatsAnswer`],
//! checked in full when decoded, no allocation) and the owned figures of one
//! shard ([`ShardStats`]) that the blocking client returns and the CLI adds up.
//!
//! A request is counted twice, in two places: by opcode and status on the
//! shard that answered it ([`ShardStats::requests_by_status`]), and in the
//! latency histogram of the shard whose connection received it
//! ([`ShardStats::latency`]; its time includes the hop to the owning shard).
//! Added up over every shard, the two agree.

use hongbao_protocol::body::{HistogramKind, StatsResponse, StatsTables};
use hongbao_protocol::response::Response;
use hongbao_protocol::{Opcode, Status};

use crate::error::ClientError;

/// Requests of one opcode answered with one status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusCount {
    /// The opcode; `None` for requests whose opcode the table does not name.
    pub opcode: Option<Opcode>,
    /// The status they were answered with.
    pub status: Status,
    /// How many.
    pub count: u64,
}

/// A latency histogram: bucket counts (not cumulative) under their bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Upper bounds of the buckets but the last, µs, increasing.
    pub bounds_us: Vec<u64>,
    /// One count per bound, then the count above the last bound.
    pub buckets: Vec<u64>,
    /// Sum of the durations recorded, µs.
    pub sum_us: u64,
}

/// The request latency of one opcode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpLatency {
    /// The opcode; `None` for requests whose opcode the table does not name.
    pub opcode: Option<Opcode>,
    /// From the read that brought the requests in to their answers written.
    pub histogram: LatencyHistogram,
}

/// One shard's figures, as STATS reports them (the figures of `/metrics`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ShardStats {
    /// The shard that answered.
    pub shard_id: u16,
    /// Shards the server runs.
    pub shard_count: u16,
    /// Milliseconds since the shard started.
    pub uptime_ms: u64,
    /// Connections open on this shard now.
    pub connections: u64,
    /// Connections refused at accept because a limit was reached.
    pub connections_refused: u64,
    /// Envelopes held.
    pub envelopes: u64,
    /// Most envelopes this shard may hold.
    pub envelopes_max: u64,
    /// Share slots held.
    pub claims: u64,
    /// Most share slots this shard may hold.
    pub claims_max: u64,
    /// Requests answered by this shard's engine.
    pub requests: u64,
    /// Requests sent on to their owning shard.
    pub forwarded_out: u64,
    /// Requests other shards sent here.
    pub forwarded_in: u64,
    /// Envelopes created.
    pub creates: u64,
    /// Shares paid.
    pub opens: u64,
    /// Envelopes expired with a refund recorded.
    pub expired: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Log writes made durable (one fdatasync each).
    pub log_syncs: u64,
    /// Resident memory of the whole server process (every shard reports the
    /// same process: not to be added up).
    pub memory_bytes: u64,
    /// Answers by opcode and status, the pairs answered at least once, in
    /// (opcode, status) order.
    pub requests_by_status: Vec<StatusCount>,
    /// Latency of the requests received on this shard, by opcode (those timed
    /// at least once), in opcode order.
    pub latency: Vec<OpLatency>,
    /// Latency of the log's write-and-sync; empty without a log.
    pub log_sync: LatencyHistogram,
}

/// A STATS answer borrowed from the receive buffer.
#[derive(Clone, Copy, Debug)]
pub struct StatsAnswer<'a> {
    /// The fixed part.
    pub fixed: StatsResponse,
    /// The tables, every entry checked.
    pub tables: StatsTables<'a>,
}

impl LatencyHistogram {
    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0, |a, b| a.saturating_add(*b))
    }

    /// An estimate of the `q` quantile (0 to 1), µs, interpolated inside
    /// its bucket as Prometheus's `histogram_quantile` does; the last bound
    /// when it falls above every bound; `None` when nothing was recorded.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            if *bucket > 0 && below.saturating_add(*bucket) as f64 >= rank {
                let Some(upper) = self.bounds_us.get(i) else { break };
                let lower = if i == 0 { 0 } else { self.bounds_us[i - 1] };
                let within = (rank - below as f64) / *bucket as f64;
                return Some(lower as f64 + (upper - lower) as f64 * within);
            }
            below = below.saturating_add(*bucket);
        }
        self.bounds_us.last().map(|b| *b as f64)
    }

    /// Adds `other` in, bucket by bucket. Returns `false`, and adds nothing,
    /// when its bounds differ from these (an empty histogram takes any).
    pub fn add(&mut self, other: &LatencyHistogram) -> bool {
        if self.buckets.is_empty() {
            self.clone_from(other);
            return true;
        }
        if other.buckets.is_empty() {
            return true;
        }
        if self.bounds_us != other.bounds_us || self.buckets.len() != other.buckets.len() {
            return false;
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine = mine.saturating_add(*theirs);
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        true
    }
}

impl ShardStats {
    /// Requests of `opcode` answered, all statuses (`None`: unknown opcodes).
    pub fn requests_of(&self, opcode: Option<Opcode>) -> u64 {
        // Saturating, like every other total: the figures come from a server.
        self.requests_by_status
            .iter()
            .filter(|c| c.opcode == opcode)
            .fold(0, |n, c| n.saturating_add(c.count))
    }

    /// The latency histogram of `opcode`, if any request of it was timed.
    pub fn latency_of(&self, opcode: Option<Opcode>) -> Option<&LatencyHistogram> {
        self.latency.iter().find(|l| l.opcode == opcode).map(|l| &l.histogram)
    }

    /// Adds another shard's figures in: counters and gauges add up, uptime
    /// and memory (the one process) take the larger. Returns `false` when a
    /// histogram could not be added (other bounds).
    pub fn add(&mut self, s: &ShardStats) -> bool {
        self.uptime_ms = self.uptime_ms.max(s.uptime_ms);
        self.memory_bytes = self.memory_bytes.max(s.memory_bytes);
        for (mine, theirs) in [
            (&mut self.connections, s.connections),
            (&mut self.connections_refused, s.connections_refused),
            (&mut self.envelopes, s.envelopes),
            (&mut self.envelopes_max, s.envelopes_max),
            (&mut self.claims, s.claims),
            (&mut self.claims_max, s.claims_max),
            (&mut self.requests, s.requests),
            (&mut self.forwarded_out, s.forwarded_out),
            (&mut self.forwarded_in, s.forwarded_in),
            (&mut self.creates, s.creates),
            (&mut self.opens, s.opens),
            (&mut self.expired, s.expired),
            (&mut self.bytes_in, s.bytes_in),
            (&mut self.bytes_out, s.bytes_out),
            (&mut self.log_syncs, s.log_syncs),
        ] {
            *mine = mine.saturating_add(theirs);
        }
        for count in &s.requests_by_status {
            let key = (count.opcode, count.status);
            match self.requests_by_status.binary_search_by_key(&key, |c| (c.opcode, c.status)) {
                Ok(i) => {
                    let total = &mut self.requests_by_status[i].count;
                    *total = total.saturating_add(count.count);
                }
                Err(i) => self.requests_by_status.insert(i, *count),
            }
        }
        let mut all_added = self.log_sync.add(&s.log_sync);
        for op in &s.latency {
            match self.latency.binary_search_by_key(&op.opcode, |l| l.opcode) {
                Ok(i) => all_added &= self.latency[i].histogram.add(&op.histogram),
                Err(i) => self.latency.insert(i, op.clone()),
            }
        }
        all_added
    }
}

impl<'a> StatsAnswer<'a> {
    /// Reads and checks a STATS answer's body.
    pub fn decode(response: &Response<'a>) -> Result<StatsAnswer<'a>, ClientError> {
        let (fixed, tables) = response.stats()?;
        Ok(StatsAnswer { fixed, tables })
    }

    /// The figures as owned values.
    pub fn shard_stats(&self) -> ShardStats {
        let s = &self.fixed;
        let bounds_us: Vec<u64> = self.tables.bucket_bounds_us().collect();
        let histogram = |h: &hongbao_protocol::body::Histogram<'_>| LatencyHistogram {
            bounds_us: bounds_us.clone(),
            buckets: h.buckets().collect(),
            sum_us: h.header.sum_us.get(),
        };
        let mut log_sync = LatencyHistogram::default();
        let mut latency = Vec::new();
        for h in self.tables.histograms() {
            match h.kind() {
                HistogramKind::LogSync => log_sync = histogram(&h),
                HistogramKind::Request => latency
                    .push(OpLatency { opcode: Opcode::from_u8(h.header.opcode), histogram: histogram(&h) }),
            }
        }
        // Every status was checked against the table when the answer was decoded.
        let requests_by_status = self
            .tables
            .request_counts()
            .filter_map(|c| {
                let status = Status::from_u16(c.status.get())?;
                Some(StatusCount { opcode: Opcode::from_u8(c.opcode), status, count: c.count.get() })
            })
            .collect();
        ShardStats {
            shard_id: s.shard_id.get(),
            shard_count: s.shard_count.get(),
            uptime_ms: s.uptime_ms.get(),
            connections: s.connections.get(),
            connections_refused: s.connections_refused.get(),
            envelopes: s.envelopes.get(),
            envelopes_max: s.envelopes_max.get(),
            claims: s.claims.get(),
            claims_max: s.claims_max.get(),
            requests: s.requests.get(),
            forwarded_out: s.forwarded_out.get(),
            forwarded_in: s.forwarded_in.get(),
            creates: s.creates.get(),
            opens: s.opens.get(),
            expired: s.expired.get(),
            bytes_in: s.bytes_in.get(),
            bytes_out: s.bytes_out.get(),
            log_syncs: s.log_syncs.get(),
            memory_bytes: s.memory_bytes.get(),
            requests_by_status,
            latency,
            log_sync,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(buckets: &[u64]) -> LatencyHistogram {
        LatencyHistogram { bounds_us: vec![100, 1000], buckets: buckets.to_vec(), sum_us: 0 }
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let h = histogram(&[50, 50, 0]);
        assert_eq!(h.quantile_us(0.5), Some(100.0));
        assert_eq!(h.quantile_us(0.25), Some(50.0));
        assert_eq!(h.quantile_us(0.75), Some(550.0));
        assert_eq!(h.quantile_us(1.0), Some(1000.0));
        // Above every bound: the last bound, as histogram_quantile answers.
        assert_eq!(histogram(&[0, 0, 7]).quantile_us(0.5), Some(1000.0));
        assert_eq!(histogram(&[0, 0, 0]).quantile_us(0.5), None);
        assert_eq!(LatencyHistogram::default().quantile_us(0.5), None);
    }

    /// Figures from a server are added saturating everywhere: huge ones
    /// give the largest total, never a panic or a wrapped one.
    #[test]
    fn huge_figures_saturate() {
        let half = 1u64 << 63;
        assert_eq!(histogram(&[half, half, 5]).quantile_us(0.5), Some(100.0));
        let count = |count| StatusCount { opcode: Some(Opcode::Open), status: Status::Ok, count };
        let mut a = ShardStats { requests_by_status: vec![count(half)], ..ShardStats::default() };
        let b = ShardStats { requests_by_status: vec![count(half)], ..ShardStats::default() };
        assert!(a.add(&b));
        assert_eq!(a.requests_by_status[0].count, u64::MAX);
        let c = ShardStats {
            requests_by_status: vec![
                count(half),
                StatusCount { opcode: Some(Opcode::Open), status: Status::NoReservation, count: half },
            ],
            ..ShardStats::default()
        };
        assert_eq!(c.requests_of(Some(Opcode::Open)), u64::MAX);
    }

    #[test]
    fn histograms_add_only_under_the_same_bounds() {
        let mut total = LatencyHistogram::default();
        assert!(total.add(&histogram(&[1, 2, 3])));
        assert!(total.add(&histogram(&[1, 0, 0])));
        assert!(total.add(&LatencyHistogram::default()));
        assert_eq!((total.buckets.as_slice(), total.count()), (&[2, 2, 3][..], 7));
        let other = LatencyHistogram { bounds_us: vec![5], buckets: vec![1, 1], sum_us: 0 };
        assert!(!total.add(&other));
        assert_eq!(total.count(), 7);
    }

    #[test]
    fn shards_add_up_by_opcode_and_status() {
        let count = |opcode, status, count| StatusCount { opcode, status, count };
        let grab = Some(Opcode::Grab);
        let mut a = ShardStats {
            memory_bytes: 10,
            requests_by_status: vec![count(grab, Status::Ok, 2)],
            latency: vec![OpLatency { opcode: grab, histogram: histogram(&[2, 0, 0]) }],
            ..ShardStats::default()
        };
        let b = ShardStats {
            memory_bytes: 12,
            opens: 1,
            requests_by_status: vec![count(None, Status::Ok, 1), count(grab, Status::Ok, 3)],
            latency: vec![
                OpLatency { opcode: None, histogram: histogram(&[1, 0, 0]) },
                OpLatency { opcode: grab, histogram: histogram(&[0, 3, 0]) },
            ],
            ..ShardStats::default()
        };
        assert!(a.add(&b));
        assert_eq!((a.memory_bytes, a.opens), (12, 1));
        assert_eq!(a.requests_by_status, [count(None, Status::Ok, 1), count(grab, Status::Ok, 5)]);
        assert_eq!((a.requests_of(grab), a.requests_of(None)), (5, 1));
        assert_eq!(a.latency_of(grab).map(LatencyHistogram::count), Some(5));
        assert_eq!(a.latency.iter().map(|l| l.opcode).collect::<Vec<_>>(), [None, grab]);
    }
}
