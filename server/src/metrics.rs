//! Prometheus metrics: what every shard counts, published for the admin
//! endpoint (`--metrics HOST:PORT`, `GET /metrics`, text format 0.0.4).
//!
//! Shards count in plain cells on their own thread, so the hot path pays no
//! atomic instruction; every tick (10 ms) each shard copies its figures into
//! its slot of [`Metrics`] with plain stores, and the endpoint's thread reads
//! those. A scrape is at most one tick behind.

use std::cell::Cell;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hongbao_protocol::{Opcode, Status};

/// Upper bounds (µs) of the latency histograms' buckets; +Inf follows.
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];
const BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;
/// Opcodes counted, and one slot for requests without a known opcode.
const OPS: usize = Opcode::ALL.len() + 1;
const STATUSES: usize = Status::ALL.len();

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

/// A latency histogram a shard fills on its own thread.
#[derive(Debug, Default)]
pub struct LocalHistogram {
    buckets: [Cell<u64>; BUCKETS],
    sum_us: Cell<u64>,
}

impl LocalHistogram {
    /// Records one duration.
    pub fn record(&self, elapsed: Duration) {
        let us = elapsed.as_micros() as u64;
        let slot = LATENCY_BUCKETS_US.iter().position(|bound| us <= *bound).unwrap_or(BUCKETS - 1);
        self.buckets[slot].set(self.buckets[slot].get() + 1);
        self.sum_us.set(self.sum_us.get() + us);
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
        let cell = &self.counts[op_slot(opcode)][status as usize];
        cell.set(cell.get() + 1);
    }
}

/// A published histogram.
#[derive(Debug, Default)]
pub struct SharedHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl SharedHistogram {
    fn publish(&self, local: &LocalHistogram) {
        for (shared, local) in self.buckets.iter().zip(&local.buckets) {
            shared.store(local.get(), Ordering::Relaxed);
        }
        self.sum_us.store(local.sum_us.get(), Ordering::Relaxed);
    }
}

/// One shard's published figures.
#[derive(Debug)]
pub struct ShardMetrics {
    requests: [[AtomicU64; STATUSES]; OPS],
    /// Gauges and counters by name, in [`GAUGES`] order.
    values: [AtomicU64; GAUGES.len()],
    log_sync: SharedHistogram,
    batch: SharedHistogram,
}

/// Single-valued metrics: name, type, help.
pub const GAUGES: [(&str, &str, &str); 11] = [
    ("hongbao_connections", "gauge", "Connections open."),
    ("hongbao_connections_refused_total", "counter", "Connections refused at accept (a limit)."),
    ("hongbao_bytes_received_total", "counter", "Bytes read from clients."),
    ("hongbao_bytes_sent_total", "counter", "Bytes written to clients."),
    ("hongbao_forwarded_out_total", "counter", "Requests forwarded to their owning shard."),
    ("hongbao_forwarded_in_total", "counter", "Requests other shards forwarded here."),
    ("hongbao_envelopes", "gauge", "Envelopes held."),
    ("hongbao_envelopes_max", "gauge", "Most envelopes this shard may hold."),
    ("hongbao_claims", "gauge", "Share slots held (counts of the envelopes held)."),
    ("hongbao_claims_max", "gauge", "Most share slots this shard may hold."),
    ("hongbao_log_syncs_total", "counter", "Log writes made durable (one fdatasync each)."),
];

impl Default for ShardMetrics {
    fn default() -> ShardMetrics {
        ShardMetrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            log_sync: SharedHistogram::default(),
            batch: SharedHistogram::default(),
        }
    }
}

impl ShardMetrics {
    /// Copies a shard's local figures (`values` in [`GAUGES`] order).
    pub fn publish(
        &self,
        requests: &LocalRequests,
        values: [u64; GAUGES.len()],
        log_sync: &LocalHistogram,
        batch: &LocalHistogram,
    ) {
        for (shared, local) in self.requests.iter().zip(&requests.counts) {
            for (s, l) in shared.iter().zip(local) {
                s.store(l.get(), Ordering::Relaxed);
            }
        }
        for (shared, value) in self.values.iter().zip(values) {
            shared.store(value, Ordering::Relaxed);
        }
        self.log_sync.publish(log_sync);
        self.batch.publish(batch);
    }
}

/// Every shard's published figures.
#[derive(Debug)]
pub struct Metrics {
    /// By shard id.
    pub shards: Vec<ShardMetrics>,
}

impl Metrics {
    /// Room for `shards` shards.
    pub fn new(shards: usize) -> Metrics {
        Metrics { shards: (0..shards).map(|_| ShardMetrics::default()).collect() }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let _ = writeln!(
            out,
            "# HELP hongbao_up 1 while the server runs.\n# TYPE hongbao_up gauge\nhongbao_up 1"
        );
        let _ = writeln!(out, "# HELP hongbao_requests_total Requests answered, by opcode and status.");
        let _ = writeln!(out, "# TYPE hongbao_requests_total counter");
        for (shard, m) in self.shards.iter().enumerate() {
            for (op, row) in m.requests.iter().enumerate() {
                let name = Opcode::ALL.get(op).map_or("other", |o| o.name());
                for (status, count) in Status::ALL.iter().zip(row) {
                    let count = count.load(Ordering::Relaxed);
                    if count > 0 {
                        let status = status.name();
                        let _ = writeln!(
                            out,
                            "hongbao_requests_total{{shard=\"{shard}\",op=\"{name}\",status=\"{status}\"}} {count}"
                        );
                    }
                }
            }
        }
        for (i, (name, kind, help)) in GAUGES.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (shard, m) in self.shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", m.values[i].load(Ordering::Relaxed));
            }
        }
        for (name, help, pick) in [
            ("hongbao_log_sync_seconds", "Time of one log write and fdatasync.", 0),
            ("hongbao_batch_seconds", "From a read completing to its answers written, log wait included.", 1),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (shard, m) in self.shards.iter().enumerate() {
                let h = if pick == 0 { &m.log_sync } else { &m.batch };
                let mut cumulative = 0;
                for (i, bucket) in h.buckets.iter().enumerate() {
                    cumulative += bucket.load(Ordering::Relaxed);
                    let le = LATENCY_BUCKETS_US
                        .get(i)
                        .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
                    let _ = writeln!(out, "{name}_bucket{{shard=\"{shard}\",le=\"{le}\"}} {cumulative}");
                }
                let sum = h.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
                let _ = writeln!(out, "{name}_sum{{shard=\"{shard}\"}} {sum}");
                let _ = writeln!(out, "{name}_count{{shard=\"{shard}\"}} {cumulative}");
            }
        }
        let rss = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
            .map_or(0, |pages| pages * 4096);
        let _ = writeln!(out, "# HELP hongbao_memory_bytes Resident memory of the process.");
        let _ = writeln!(out, "# TYPE hongbao_memory_bytes gauge\nhongbao_memory_bytes {rss}");
        out
    }
}

/// Serves `GET /metrics` on `addr` from a thread of its own until `stopping`.
/// Each request is read with a limit and a timeout; anything else gets 404.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>, stopping: Arc<AtomicBool>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        while !stopping.load(Ordering::Relaxed) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            let mut reader = BufReader::new(std::io::Read::take(&stream, 8 * 1024));
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let (status, body) = if line.starts_with("GET /metrics ") || line.starts_with("GET /metrics?") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "only GET /metrics here\n".to_string())
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_slots_follow_the_opcode_table() {
        for (i, op) in Opcode::ALL.iter().enumerate() {
            assert_eq!(op_slot(*op as u8), i);
        }
        assert_eq!(op_slot(0x7f), OPS - 1);
    }
}
