//! `hongbao-cli stats`: STATS from every shard-aware port, shown per shard
//! and added up. The human form is one row of counters per shard and a table
//! of requests by opcode (counts by status, latency p50 and p99 estimated
//! from the buckets); `--json` carries every figure, buckets included.

use std::net::SocketAddr;
use std::time::Duration;

use hongbao_client::{Client, ClientError, LatencyHistogram, ShardStats, Status};
use hongbao_protocol::Opcode;
use serde_json::{json, Map, Value};

use super::{refused, Outcome};

/// HELLO on the main port for the shard map, then STATS on each shard-aware
/// port of the same host: STATS answers for the shard that receives it only.
pub fn stats(client: &mut Client, timeout: Duration, token: Option<&[u8]>) -> Result<Outcome, ClientError> {
    let hello = client.hello()?;
    let Some(info) = hello.body else {
        let json = json!({ "status": hello.status.name(), "shards": [] });
        return Ok(Outcome { status: hello.status, json, human: refused("hello", hello.status) });
    };
    let host = client.peer_addr()?.ip();
    let mut shards = Vec::with_capacity(info.shard_ports.len());
    for (index, port) in info.shard_ports.iter().enumerate() {
        let mut shard = Client::connect_timeout(SocketAddr::new(host, *port), timeout)?;
        if let Some(token) = token {
            let status = shard.authenticate(token)?;
            if status != Status::Ok {
                let json = json!({ "status": status.name(), "shards": shards_json(&shards) });
                let human = format!("{} (port {port})", refused("hello", status));
                return Ok(Outcome { status, json, human });
            }
        }
        let reply = shard.stats()?;
        match reply.body {
            // Each port must be answered by its own shard, or the totals
            // would count one shard twice (and another not at all).
            Some(s) if s.shard_count != info.shard_count => {
                return Err(ClientError::HelloDisagrees {
                    port: *port,
                    main: info.shard_count,
                    found: s.shard_count,
                });
            }
            Some(s) if usize::from(s.shard_id) != index => {
                return Err(ClientError::ShardMismatch {
                    port: *port,
                    expected: index as u16,
                    found: s.shard_id,
                });
            }
            Some(s) => shards.push(s),
            None => {
                let json = json!({ "status": reply.status.name(), "shards": shards_json(&shards) });
                let human = format!("{} (port {port})", refused("stats", reply.status));
                return Ok(Outcome { status: reply.status, json, human });
            }
        }
    }
    Ok(stats_outcome(&shards))
}

/// The outcome for every shard's answer.
pub fn stats_outcome(shards: &[ShardStats]) -> Outcome {
    let (total, left_out) = total(shards);
    let json = json!({
        "status": Status::Ok.name(),
        "shards": shards_json(shards),
        "total": stats_json(&total),
        "latency_total_leaves_out_shards": left_out,
    });
    let mut human = format!(
        "{:>5} {:>9} {:>6} {:>7} {:>21} {:>21} {:>12} {:>10} {:>10} {:>9} {:>9} {:>7} {:>9} {:>13} {:>13}",
        "shard",
        "uptime_s",
        "conns",
        "refused",
        "envelopes/max",
        "claims/max",
        "requests",
        "fwd_out",
        "fwd_in",
        "creates",
        "opens",
        "expired",
        "log_syncs",
        "bytes_in",
        "bytes_out"
    );
    for s in shards {
        human.push('\n');
        human.push_str(&stats_row(&s.shard_id.to_string(), s));
    }
    human.push('\n');
    human.push_str(&stats_row("total", &total));
    human.push_str(&format!("\nmemory {:.1} MiB resident (the whole process)\n\n", mib(total.memory_bytes)));
    human.push_str(&op_table(&total));
    if !left_out.is_empty() {
        let ids: Vec<String> = left_out.iter().map(u16::to_string).collect();
        human.push_str(&format!(
            "\nlatency totals leave out the histograms of shard{} {} with other bucket bounds (another build?); see each shard in --json",
            if ids.len() > 1 { "s" } else { "" },
            ids.join(", ")
        ));
    }
    Outcome { status: Status::Ok, json, human }
}

fn stats_row(name: &str, s: &ShardStats) -> String {
    format!(
        "{name:>5} {:>9} {:>6} {:>7} {:>21} {:>21} {:>12} {:>10} {:>10} {:>9} {:>9} {:>7} {:>9} {:>13} {:>13}",
        s.uptime_ms / 1000,
        s.connections,
        s.connections_refused,
        format!("{}/{}", s.envelopes, s.envelopes_max),
        format!("{}/{}", s.claims, s.claims_max),
        s.requests,
        s.forwarded_out,
        s.forwarded_in,
        s.creates,
        s.opens,
        s.expired,
        s.log_syncs,
        s.bytes_in,
        s.bytes_out,
    )
}

/// Requests by opcode over every shard: answers by status, and the latency
/// of those received (one row per opcode seen), then the log's syncs.
fn op_table(total: &ShardStats) -> String {
    let mut opcodes: Vec<Option<Opcode>> = total.requests_by_status.iter().map(|c| c.opcode).collect();
    opcodes.extend(total.latency.iter().map(|l| l.opcode));
    opcodes.sort_unstable();
    opcodes.dedup();
    let mut table = format!(
        "{:<9} {:>12} {:>10} {:>10}  by status (latency: read to answer written)",
        "op", "requests", "p50", "p99"
    );
    for opcode in opcodes {
        let statuses: Vec<String> = total
            .requests_by_status
            .iter()
            .filter(|c| c.opcode == opcode)
            .map(|c| format!("{} {}", c.status.name(), c.count))
            .collect();
        let latency = total.latency_of(opcode);
        table.push_str(&format!(
            "\n{:<9} {:>12} {:>10} {:>10}  {}",
            op_name(opcode),
            total.requests_of(opcode),
            quantile(latency, 0.5),
            quantile(latency, 0.99),
            statuses.join(", ")
        ));
    }
    let log = &total.log_sync;
    table.push_str(&format!(
        "\n{:<9} {:>12} {:>10} {:>10}  write and fdatasync",
        "log sync",
        log.count(),
        quantile(Some(log), 0.5),
        quantile(Some(log), 0.99)
    ));
    table
}

/// Counters added up over shards; uptime is the longest, memory the one
/// process's. Also the ids of the shards some of whose histograms had other
/// bucket bounds than the first shard's (another build): those are left out
/// of the latency totals (their counters still add up), and the caller says so.
fn total(shards: &[ShardStats]) -> (ShardStats, Vec<u16>) {
    let mut t = ShardStats { shard_count: shards.len() as u16, ..ShardStats::default() };
    let mut left_out = Vec::new();
    for s in shards {
        if !t.add(s) {
            left_out.push(s.shard_id);
        }
    }
    (t, left_out)
}

fn shards_json(shards: &[ShardStats]) -> Vec<Value> {
    shards.iter().map(stats_json).collect()
}

fn stats_json(s: &ShardStats) -> Value {
    let mut by_op = Map::new();
    for c in &s.requests_by_status {
        let row = by_op.entry(op_name(c.opcode)).or_insert_with(|| json!({}));
        row[c.status.name()] = json!(c.count);
    }
    let latency: Map<String, Value> =
        s.latency.iter().map(|l| (op_name(l.opcode).to_string(), histogram_json(&l.histogram))).collect();
    json!({
        "shard_id": s.shard_id,
        "shard_count": s.shard_count,
        "uptime_ms": s.uptime_ms,
        "connections": s.connections,
        "connections_refused": s.connections_refused,
        "envelopes": s.envelopes,
        "envelopes_max": s.envelopes_max,
        "claims": s.claims,
        "claims_max": s.claims_max,
        "requests": s.requests,
        "forwarded_out": s.forwarded_out,
        "forwarded_in": s.forwarded_in,
        "creates": s.creates,
        "opens": s.opens,
        "expired": s.expired,
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
        "log_syncs": s.log_syncs,
        "memory_bytes": s.memory_bytes,
        "requests_by_op": by_op,
        "latency": latency,
        "log_sync": histogram_json(&s.log_sync),
    })
}

/// A histogram as JSON: its count and sum, p50 and p99 estimates (null when
/// empty), and the buckets with their upper bounds (null for the last).
fn histogram_json(h: &LatencyHistogram) -> Value {
    let buckets: Vec<Value> = h
        .buckets
        .iter()
        .enumerate()
        .map(|(i, count)| json!({ "le_us": h.bounds_us.get(i), "count": count }))
        .collect();
    json!({
        "count": h.count(),
        "sum_us": h.sum_us,
        "p50_us": h.quantile_us(0.5),
        "p99_us": h.quantile_us(0.99),
        "buckets": buckets,
    })
}

fn op_name(opcode: Option<Opcode>) -> &'static str {
    opcode.map_or("other", Opcode::name)
}

/// A quantile for a person: µs below a millisecond, ms below a second.
fn quantile(h: Option<&LatencyHistogram>, q: f64) -> String {
    match h.and_then(|h| h.quantile_us(q)) {
        None => "-".to_string(),
        Some(us) if us < 1_000.0 => format!("{us:.0} µs"),
        Some(us) if us < 1_000_000.0 => format!("{:.2} ms", us / 1e3),
        Some(us) => format!("{:.2} s", us / 1e6),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use hongbao_client::{OpLatency, StatusCount};

    use super::*;

    fn shard(id: u16, grabs_ok: u64) -> ShardStats {
        let grab = Some(Opcode::Grab);
        let histogram =
            |buckets: Vec<u64>| LatencyHistogram { bounds_us: vec![100, 1000], buckets, sum_us: 0 };
        ShardStats {
            shard_id: id,
            memory_bytes: 64 << 20,
            log_syncs: 2,
            requests_by_status: vec![
                StatusCount { opcode: grab, status: Status::Ok, count: grabs_ok },
                StatusCount { opcode: grab, status: Status::SoldOut, count: 1 },
            ],
            latency: vec![OpLatency { opcode: grab, histogram: histogram(vec![grabs_ok, 1, 0]) }],
            log_sync: histogram(vec![0, 2, 0]),
            ..ShardStats::default()
        }
    }

    #[test]
    fn the_op_table_adds_shards_up_by_status_with_latency() {
        let outcome = stats_outcome(&[shard(0, 3), shard(1, 4)]);
        let human = &outcome.human;
        assert!(human.contains("memory 64.0 MiB resident"), "{human}");
        let grab = human.lines().find(|l| l.starts_with("grab ")).expect("a grab row");
        assert!(grab.contains(" 9 ") && grab.contains("ok 7, sold_out 2"), "{grab}");
        assert!(grab.contains("µs"), "{grab}");
        let log = human.lines().find(|l| l.starts_with("log sync")).expect("a log sync row");
        assert!(log.contains(" 4 ") && log.contains("550 µs"), "{log}");
        println!("{human}");

        let total = &outcome.json["total"];
        assert_eq!(total["requests_by_op"]["grab"], json!({ "ok": 7, "sold_out": 2 }));
        assert_eq!(total["latency"]["grab"]["count"], 9);
        assert_eq!(total["latency"]["grab"]["buckets"][2], json!({ "le_us": null, "count": 0 }));
        assert_eq!(total["log_sync"]["count"], 4);
        assert_eq!((total["log_syncs"].as_u64(), total["memory_bytes"].as_u64()), (Some(4), Some(64 << 20)));
        assert_eq!(outcome.json["shards"][1]["requests_by_op"]["grab"]["ok"], 4);
        assert!(outcome.json["shards"][0]["latency"]["grab"]["p99_us"].as_f64().is_some());
    }

    #[test]
    fn a_shard_with_other_bucket_bounds_is_named_not_silently_dropped() {
        let mut odd = shard(1, 4);
        odd.latency[0].histogram.bounds_us = vec![50, 500];
        let outcome = stats_outcome(&[shard(0, 3), odd, shard(2, 5)]);
        assert_eq!(outcome.json["latency_total_leaves_out_shards"], json!([1]));
        assert!(
            outcome.human.contains("leave out the histograms of shard 1 with other bucket bounds"),
            "{}",
            outcome.human
        );
        // Its counters still add up; its latency does not.
        let total = &outcome.json["total"];
        assert_eq!(total["requests_by_op"]["grab"]["ok"], 12);
        assert_eq!(total["latency"]["grab"]["count"], 3 + 1 + 5 + 1);
        let clean = stats_outcome(&[shard(0, 3), shard(1, 4)]);
        assert_eq!(clean.json["latency_total_leaves_out_shards"], json!([]));
        assert!(!clean.human.contains("leave out the histograms"), "{}", clean.human);
    }

    #[test]
    fn quantiles_read_in_their_unit() {
        let h = LatencyHistogram {
            bounds_us: vec![100, 10_000, 5_000_000],
            buckets: vec![1, 0, 0, 0],
            sum_us: 0,
        };
        assert_eq!(quantile(Some(&h), 0.5), "50 µs");
        let h = LatencyHistogram { buckets: vec![0, 1, 0, 0], ..h };
        assert_eq!(quantile(Some(&h), 1.0), "10.00 ms");
        let h = LatencyHistogram { buckets: vec![0, 0, 0, 1], ..h };
        assert_eq!(quantile(Some(&h), 0.5), "5.00 s");
        assert_eq!(quantile(None, 0.5), "-");
    }
}
