//! Prometheus metrics: what every shard counts, published for the admin
//! endpoint (`--metrics HOST:PORT`, `GET /metrics`, text format 0.0.4).
//!
//! Shards count in plain cells on their own thread, so the hot path pays no
//! atomic instruction; every tick (10 ms) each shard copies its figures into
//! its slot of [`Metrics`] with plain stores, and the endpoint's thread reads
//! those. A scrape is at most one tick behind.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hongbao_protocol::{Opcode, Status};

use crate::counters::{
    LocalHistogram, LocalLatency, LocalRequests, BUCKETS, LATENCY_BUCKETS_US, OPS, STATUSES,
};

/// A published histogram.
#[derive(Debug, Default)]
pub struct SharedHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl SharedHistogram {
    fn publish(&self, local: &LocalHistogram) {
        for (shared, local) in self.buckets.iter().zip(local.buckets()) {
            shared.store(local, Ordering::Relaxed);
        }
        self.sum_us.store(local.sum_us(), Ordering::Relaxed);
    }

    /// Appends the `_bucket`, `_sum` and `_count` samples, `labels` first.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le =
                LATENCY_BUCKETS_US.get(i).map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {cumulative}");
    }

    fn is_empty(&self) -> bool {
        self.buckets.iter().all(|b| b.load(Ordering::Relaxed) == 0)
    }
}

/// A shard's single-valued figures, the same for STATS and the endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Connections open.
    pub connections: u64,
    /// Connections refused at accept.
    pub connections_refused: u64,
    /// Memory the connections' buffers held at the last sweep.
    pub connection_buffer_bytes: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Requests forwarded to their owning shard.
    pub forwarded_out: u64,
    /// Requests other shards forwarded here.
    pub forwarded_in: u64,
    /// Envelopes held.
    pub envelopes: u64,
    /// Most envelopes the shard may hold.
    pub envelopes_max: u64,
    /// Share slots held.
    pub claims: u64,
    /// Most share slots the shard may hold.
    pub claims_max: u64,
    /// Log writes made durable.
    pub log_syncs: u64,
    /// 1 once the log could not write: the shard refuses changes.
    pub log_failed: u64,
    /// Socket-loop stalls (gaps of 1 ms or more between turns).
    pub loop_stalls: u64,
    /// Their time in all, microseconds.
    pub loop_stall_us: u64,
    /// The longest, microseconds.
    pub loop_stall_max_us: u64,
    /// Socket-loop time in turns that found work, and the tick's work,
    /// microseconds.
    pub loop_busy_us: u64,
    /// The rest of the loop's time (idle turns, breaths, parks), microseconds.
    pub loop_idle_us: u64,
}

impl Gauges {
    /// The values in [`GAUGES`] order.
    fn in_order(&self) -> [u64; GAUGES.len()] {
        [
            self.connections,
            self.connections_refused,
            self.connection_buffer_bytes,
            self.bytes_in,
            self.bytes_out,
            self.forwarded_out,
            self.forwarded_in,
            self.envelopes,
            self.envelopes_max,
            self.claims,
            self.claims_max,
            self.log_syncs,
            self.log_failed,
            self.loop_stalls,
            self.loop_stall_us,
            self.loop_stall_max_us,
            self.loop_busy_us,
            self.loop_idle_us,
        ]
    }
}

/// One shard's published figures.
#[derive(Debug)]
pub struct ShardMetrics {
    requests: [[AtomicU64; STATUSES]; OPS],
    /// Gauges and counters by name, in [`GAUGES`] order.
    values: [AtomicU64; GAUGES.len()],
    log_sync: SharedHistogram,
    latency: [SharedHistogram; OPS],
    /// What the watchdog sees of the shard's socket loop.
    pub watch: crate::watchdog::Watch,
}

/// Single-valued metrics: name, type, help.
pub const GAUGES: [(&str, &str, &str); 18] = [
    ("hongbao_connections", "gauge", "Connections open."),
    ("hongbao_connections_refused_total", "counter", "Connections refused at accept (a limit)."),
    (
        "hongbao_connection_buffer_bytes",
        "gauge",
        "Memory held by the connections' buffers (capacity), at the last sweep; connections idle for a sweep keep at most 4 KiB of each empty buffer.",
    ),
    ("hongbao_bytes_received_total", "counter", "Bytes read from clients."),
    ("hongbao_bytes_sent_total", "counter", "Bytes written to clients."),
    ("hongbao_forwarded_out_total", "counter", "Requests forwarded to their owning shard."),
    ("hongbao_forwarded_in_total", "counter", "Requests other shards forwarded here."),
    ("hongbao_envelopes", "gauge", "Envelopes held."),
    ("hongbao_envelopes_max", "gauge", "Most envelopes this shard may hold."),
    ("hongbao_claims", "gauge", "Share slots held (counts of the envelopes held)."),
    ("hongbao_claims_max", "gauge", "Most share slots this shard may hold."),
    ("hongbao_log_syncs_total", "counter", "Log writes made durable (one fdatasync each)."),
    (
        "hongbao_log_failed",
        "gauge",
        "1 once the shard's log could not write (a full disk, say): it refuses changes and serves reads until restarted.",
    ),
    (
        "hongbao_loop_stalls_total",
        "counter",
        "Gaps of 1 ms or more between two turns of the shard's socket loop (parks not counted): the shard answered no one.",
    ),
    ("hongbao_loop_stall_microseconds_total", "counter", "Time in those gaps, microseconds."),
    ("hongbao_loop_stall_max_microseconds", "gauge", "The longest of those gaps, microseconds."),
    (
        "hongbao_loop_busy_microseconds_total",
        "counter",
        "Time of the socket loop's turns that found work (answers, sends, accepts) and of the timer tick's work, microseconds.",
    ),
    (
        "hongbao_loop_idle_microseconds_total",
        "counter",
        "Time of the turns that found nothing and between turns with no work (breaths, parks), microseconds: near 0 next to busy means the shard is the limit.",
    ),
];

impl Default for ShardMetrics {
    fn default() -> ShardMetrics {
        ShardMetrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            log_sync: SharedHistogram::default(),
            latency: std::array::from_fn(|_| SharedHistogram::default()),
            watch: crate::watchdog::Watch::default(),
        }
    }
}

impl ShardMetrics {
    /// Copies a shard's local figures.
    pub fn publish(
        &self,
        requests: &LocalRequests,
        gauges: &Gauges,
        log_sync: &LocalHistogram,
        latency: &LocalLatency,
    ) {
        for (slot, status, count) in requests.rows() {
            self.requests[slot][status as usize].store(count, Ordering::Relaxed);
        }
        for (shared, value) in self.values.iter().zip(gauges.in_order()) {
            shared.store(value, Ordering::Relaxed);
        }
        self.log_sync.publish(log_sync);
        for (slot, shared) in self.latency.iter().enumerate() {
            shared.publish(latency.slot(slot));
        }
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
        let mut out = String::with_capacity(32 * 1024);
        let _ = writeln!(
            out,
            "# HELP hongbao_up 1 while the server runs.\n# TYPE hongbao_up gauge\nhongbao_up 1"
        );
        let _ = writeln!(out, "# HELP hongbao_requests_total Requests answered, by opcode and status.");
        let _ = writeln!(out, "# TYPE hongbao_requests_total counter");
        for (shard, m) in self.shards.iter().enumerate() {
            for (op, row) in m.requests.iter().enumerate() {
                let name = op_name(op);
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
        let name = "hongbao_shard_nudges_total";
        let _ = writeln!(
            out,
            "# HELP {name} Signals the watchdog sent a shard's thread because its socket loop was --watchdog-ms late for its next turn (each is logged too).\n# TYPE {name} counter"
        );
        for (shard, m) in self.shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", m.watch.nudges());
        }
        let name = "hongbao_log_sync_seconds";
        let _ = writeln!(out, "# HELP {name} Time of one log write and fdatasync.\n# TYPE {name} histogram");
        for (shard, m) in self.shards.iter().enumerate() {
            m.log_sync.render(&mut out, name, &format!("shard=\"{shard}\""));
        }
        let name = "hongbao_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Requests received on the shard's connections, from the read that brought \
             them in to their answers written (log wait and forwarding hop included).\n# TYPE {name} histogram"
        );
        for (shard, m) in self.shards.iter().enumerate() {
            for (op, h) in m.latency.iter().enumerate() {
                // The known opcodes always (a series should not appear from
                // nowhere); "other" only once something was counted there.
                if op < Opcode::ALL.len() || !h.is_empty() {
                    h.render(&mut out, name, &format!("shard=\"{shard}\",op=\"{}\"", op_name(op)));
                }
            }
        }
        let name = "hongbao_log_lines_dropped_total";
        let _ = writeln!(
            out,
            "# HELP {name} Log lines dropped because stderr was not being read.\n# TYPE {name} counter\n{name} {}",
            crate::log::dropped()
        );
        let _ = writeln!(out, "# HELP hongbao_memory_bytes Resident memory of the process.");
        let _ = writeln!(out, "# TYPE hongbao_memory_bytes gauge\nhongbao_memory_bytes {}", memory_bytes());
        out
    }
}

/// The label of an opcode slot.
fn op_name(slot: usize) -> &'static str {
    crate::counters::slot_opcode(slot).map_or("other", Opcode::name)
}

/// Resident memory of the process, from `VmRSS` in `/proc/self/status` (in
/// kB there, so no page size is assumed); 0 where that cannot be read. Read
/// into a stack buffer: STATS asks for it on a shard's thread.
pub fn memory_bytes() -> u64 {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let Ok(mut file) = std::fs::File::open("/proc/self/status") else { return 0 };
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    let text = std::str::from_utf8(&buf[..len]).unwrap_or("");
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Longest a metrics client may take over its whole request and answer.
pub const METRICS_REQUEST_TIME_MAX: Duration = Duration::from_secs(5);
/// Longest request line read (the rest of the request is not read).
const METRICS_REQUEST_LINE_MAX: usize = 8 * 1024;

/// The request's first line, read by `deadline` and within
/// [`METRICS_REQUEST_LINE_MAX`]; `None` if it does not come whole in time.
fn read_request_line(mut stream: &TcpStream, deadline: Instant) -> Option<String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 1024];
    while !line.contains(&b'\n') {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        stream.set_read_timeout(Some(left)).ok()?;
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        line.extend_from_slice(&buf[..n]);
        if line.len() > METRICS_REQUEST_LINE_MAX && !line[..METRICS_REQUEST_LINE_MAX].contains(&b'\n') {
            return None;
        }
    }
    let end = line.iter().position(|b| *b == b'\n')?;
    Some(String::from_utf8_lossy(&line[..end]).into_owned())
}

/// Writes `bytes` to `stream` until done or `deadline`, whichever is first.
fn write_all_by(mut stream: &TcpStream, mut bytes: &[u8], deadline: Instant) {
    while !bytes.is_empty() {
        let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            return;
        };
        if stream.set_write_timeout(Some(left)).is_err() {
            return;
        }
        match stream.write(bytes) {
            Ok(0) | Err(_) => return,
            Ok(n) => bytes = &bytes[n..],
        }
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
            // One client at a time, each with a deadline for the whole
            // exchange: a client dribbling a byte a second must not hold
            // the endpoint (and every scrape behind it) for hours.
            let deadline = Instant::now() + METRICS_REQUEST_TIME_MAX;
            let Some(line) = read_request_line(&stream, deadline) else { continue };
            let (status, body) = if line.starts_with("GET /metrics ") || line.starts_with("GET /metrics?") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "only GET /metrics here\n".to_string())
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            write_all_by(&stream, answer.as_bytes(), deadline);
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_from_proc() {
        assert!(memory_bytes() > 0);
    }

    #[test]
    fn latency_renders_per_shard_and_opcode() {
        let metrics = Metrics::new(1);
        let latency = LocalLatency::default();
        latency.slot(crate::counters::op_slot(0x11)).record_n(Duration::from_micros(30), 4);
        let gauges = Gauges {
            connections: 2,
            loop_stalls: 3,
            loop_stall_max_us: 4_100,
            loop_busy_us: 900,
            loop_idle_us: 100,
            log_failed: 1,
            ..Gauges::default()
        };
        let log_sync = LocalHistogram::default();
        metrics.shards[0].publish(&LocalRequests::default(), &gauges, &log_sync, &latency);
        let text = metrics.render();
        assert!(text
            .contains("hongbao_request_duration_seconds_bucket{shard=\"0\",op=\"grab\",le=\"0.000025\"} 0"));
        assert!(text
            .contains("hongbao_request_duration_seconds_bucket{shard=\"0\",op=\"grab\",le=\"0.00005\"} 4"));
        assert!(text.contains("hongbao_request_duration_seconds_count{shard=\"0\",op=\"grab\"} 4"));
        assert!(text.contains("hongbao_request_duration_seconds_count{shard=\"0\",op=\"stats\"} 0"));
        assert!(!text.contains("op=\"other\""), "an empty 'other' is left out");
        assert!(text.contains("hongbao_connections{shard=\"0\"} 2"));
        assert!(text.contains("hongbao_loop_stalls_total{shard=\"0\"} 3"));
        assert!(text.contains("hongbao_loop_stall_max_microseconds{shard=\"0\"} 4100"));
        assert!(text.contains("# TYPE hongbao_loop_stall_microseconds_total counter"));
        assert!(text.contains("hongbao_loop_busy_microseconds_total{shard=\"0\"} 900"));
        assert!(text.contains("hongbao_loop_idle_microseconds_total{shard=\"0\"} 100"));
        assert!(text.contains("hongbao_log_sync_seconds_count{shard=\"0\"} 0"));
        assert!(text.contains("hongbao_log_failed{shard=\"0\"} 1"));
    }
}
