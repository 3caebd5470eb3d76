//! STATS against what was sent, and against the metrics endpoint: known
//! requests go in (some forwarded between shards, one with an unknown
//! opcode), then STATS's counts by opcode and status must be what the test
//! saw answered, its latency histograms must time every request once, and
//! `/metrics`, scraped after the load has stopped, must carry the same figures.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hongbao_client::{Client, EnvelopeId, ShardStats};
use hongbao_protocol::body::{EnvelopeKind, FixedBody, HistogramHeader, RequestCount, StatsResponse};
use hongbao_protocol::{Header, Opcode, Status, HEADER_LEN};
use support::prometheus::{parse, scrape, Sample};
use support::TestServer;
use zerocopy::IntoBytes;

/// Answers the test saw, by opcode and status.
type Sent = BTreeMap<(Opcode, Status), u64>;

/// Sends a fixed mix of requests over `shard_clients` (one per shard-aware
/// port) and `main` (the main port), and counts their answers.
fn send_known_requests(shard_clients: &mut [Client], main: &mut Client) -> Sent {
    let mut sent = Sent::new();
    let mut saw = |op: Opcode, status: Status| *sent.entry((op, status)).or_default() += 1;
    // Envelopes on both shards: two on shard 0, one on shard 1, two shares each.
    let mut envelopes = Vec::new();
    for (shard, n) in [(0, 2), (1, 1)] {
        for _ in 0..n {
            let created = shard_clients[shard].create(1, 100, 2, EnvelopeKind::Random, 0).unwrap();
            saw(Opcode::Create, created.status);
            envelopes.push(created.body.unwrap().envelope);
        }
    }
    assert_eq!(envelopes.iter().map(|e| e.shard()).collect::<Vec<_>>(), [0, 0, 1]);
    // Through the main port, whichever shard took the connection: half of
    // these are another shard's and are forwarded.
    for (envelope, users) in [(envelopes[0], 1..=3), (envelopes[2], 1..=2)] {
        for user in users {
            saw(Opcode::Grab, main.grab(envelope, user).unwrap().status);
        }
        saw(Opcode::Open, main.open(envelope, 1).unwrap().status);
    }
    // Shard 1's port asked about shard 0's envelope: always forwarded.
    saw(Opcode::Grab, shard_clients[1].grab(envelopes[1], 9).unwrap().status);
    saw(Opcode::Open, shard_clients[1].open(envelopes[1], 8).unwrap().status);
    saw(Opcode::Query, shard_clients[1].query(envelopes[0], 0, 10).unwrap().status);
    saw(Opcode::Query, main.query(EnvelopeId::new(1, 999), 0, 0).unwrap().status);
    saw(Opcode::Ping, main.ping().unwrap());
    saw(Opcode::Hello, main.hello().unwrap().status);
    sent
}

/// Sends shard 0 a frame with an opcode the table does not name: answered
/// (unknown_opcode) and timed in the "other" slot, but not counted by status,
/// since it never reaches the engine. The connection is returned to be kept
/// open, so that its close cannot change `connections` between STATS and the
/// scrape.
fn send_unknown_opcode(server: &TestServer) -> TcpStream {
    let mut raw = TcpStream::connect(server.shard_addr(0)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut header = Header::request(Opcode::Ping, 77, 0);
    header.opcode = 0x7f;
    raw.write_all(header.as_bytes()).unwrap();
    let mut answer = [0u8; HEADER_LEN];
    raw.read_exact(&mut answer).unwrap();
    assert_eq!((answer[3], u16::from_le_bytes([answer[6], answer[7]])), (0x7f, Status::UnknownOpcode as u16));
    raw
}

/// Polls `/metrics` until every shard's STATS answer has been timed and
/// published (at most a tick after it was written).
fn scrape_after_stats(addr: std::net::SocketAddr, shards: usize) -> Vec<Sample> {
    for _ in 0..200 {
        let samples = parse(&scrape(addr));
        let timed = (0..shards).all(|shard| {
            value(
                &samples,
                "hongbao_request_duration_seconds_count",
                &[("shard", shard.to_string()), ("op", "stats".into())],
            ) == 1.0
        });
        if timed {
            return samples;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the STATS answers never showed in /metrics");
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, impl ToString)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k) == Some(&v.to_string())))
        .map(|(_, _, v)| v)
        .sum()
}

fn op_name(opcode: Option<Opcode>) -> &'static str {
    opcode.map_or("other", Opcode::name)
}

/// Bytes of the STATS frame that carried `s`: its answer is counted in
/// `bytes_out` only once written, after the figures it carries were read.
fn stats_frame_len(s: &ShardStats) -> usize {
    let buckets = s.log_sync.buckets.len();
    HEADER_LEN
        + StatsResponse::SIZE
        + s.requests_by_status.len() * RequestCount::SIZE
        + (buckets - 1) * 8
        + (s.latency.len() + 1) * (HistogramHeader::SIZE + buckets * 8)
}

#[test]
fn stats_counts_what_was_sent_and_agrees_with_the_endpoint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = format!("127.0.0.1:{port}");
    let server = TestServer::start(2, &["--metrics", &metrics]);
    let mut shard_clients: Vec<Client> =
        (0..2).map(|i| Client::connect(server.shard_addr(i)).unwrap()).collect();
    let mut main = Client::connect(server.main).unwrap();
    let sent = send_known_requests(&mut shard_clients, &mut main);
    let _raw = send_unknown_opcode(&server);
    assert_eq!(sent[&(Opcode::Grab, Status::SoldOut)], 1);

    // Every connection stays open until the end, so `connections` holds still.
    let stats: Vec<ShardStats> = shard_clients.iter_mut().map(|c| c.stats().unwrap().body.unwrap()).collect();
    let mut total = ShardStats::default();
    for (shard, s) in stats.iter().enumerate() {
        assert_eq!(usize::from(s.shard_id), shard);
        let answered: u64 = s.requests_by_status.iter().map(|c| c.count).sum();
        assert_eq!(answered, s.requests, "shard {shard}: the counts add up to requests");
        assert_eq!(s.log_sync.count(), s.log_syncs, "shard {shard}: one time per log sync");
        assert!(s.log_syncs >= 1, "shard {shard} made changes, so it synced its log");
        assert!(s.memory_bytes > 0);
        assert!(total.add(s), "every shard has the same bucket bounds");
    }

    // By opcode and status, added over shards: what was sent, and each STATS itself.
    let mut expected = sent.clone();
    expected.insert((Opcode::Stats, Status::Ok), 2);
    let counted: Sent =
        total.requests_by_status.iter().filter_map(|c| Some(((c.opcode?, c.status), c.count))).collect();
    assert_eq!(counted, expected);
    // Every request timed once, on the shard that received it; neither STATS
    // yet (each is timed once written, after its figures were read).
    for op in Opcode::ALL {
        let sent_of: u64 = sent.iter().filter(|((o, _), _)| *o == op).map(|(_, n)| n).sum();
        let timed = total.latency_of(Some(op)).map_or(0, |h| h.count());
        assert_eq!(timed, sent_of, "{op} requests timed");
    }
    let other = (total.latency_of(None).map(|h| h.count()), total.requests_of(None));
    assert_eq!(other, (Some(1), 1), "the unknown opcode: timed and counted, under opcode 0x00");
    let unknown: Vec<_> = total.requests_by_status.iter().filter(|c| c.opcode.is_none()).collect();
    assert_eq!(unknown.len(), 1);
    assert_eq!((unknown[0].status, unknown[0].count), (Status::UnknownOpcode, 1));
    assert!(total.forwarded_out >= 2, "shard 1's port forwarded its GRAB and OPEN");
    assert_eq!(total.forwarded_out, total.forwarded_in);
    assert_eq!((total.envelopes, total.claims, total.creates), (3, 6, 3));

    // The endpoint, once it shows both STATS timed: the same figures, plus
    // what answering STATS itself changed.
    let samples = scrape_after_stats(metrics.parse().unwrap(), stats.len());
    for (shard, s) in stats.iter().enumerate() {
        let get = |name: &str| value(&samples, name, &[("shard", shard)]) as u64;
        let gauges = [
            ("hongbao_connections", s.connections),
            ("hongbao_connections_refused_total", s.connections_refused),
            ("hongbao_bytes_received_total", s.bytes_in),
            ("hongbao_bytes_sent_total", s.bytes_out + stats_frame_len(s) as u64),
            ("hongbao_forwarded_out_total", s.forwarded_out),
            ("hongbao_forwarded_in_total", s.forwarded_in),
            ("hongbao_envelopes", s.envelopes),
            ("hongbao_envelopes_max", s.envelopes_max),
            ("hongbao_claims", s.claims),
            ("hongbao_claims_max", s.claims_max),
            ("hongbao_log_syncs_total", s.log_syncs),
        ];
        for (name, expected) in gauges {
            assert_eq!(get(name), expected, "shard {shard}: {name}");
        }
        let published = samples
            .iter()
            .filter(|(n, l, _)| n == "hongbao_requests_total" && l["shard"] == shard.to_string());
        assert_eq!(published.count(), s.requests_by_status.len(), "shard {shard}: the same pairs");
        for c in &s.requests_by_status {
            let labels = [
                ("shard", shard.to_string()),
                ("op", op_name(c.opcode).into()),
                ("status", c.status.name().into()),
            ];
            assert_eq!(
                value(&samples, "hongbao_requests_total", &labels) as u64,
                c.count,
                "shard {shard}: {c:?}"
            );
        }
        for op in Opcode::ALL {
            let labels = [("shard", shard.to_string()), ("op", op.name().to_string())];
            let histogram = s.latency_of(Some(op)).cloned().unwrap_or_default();
            // The endpoint has timed this shard's STATS; the answer could not.
            let own = u64::from(op == Opcode::Stats);
            let count = value(&samples, "hongbao_request_duration_seconds_count", &labels) as u64;
            assert_eq!(count, histogram.count() + own, "shard {shard}: {op} timed");
            if own == 0 && count > 0 {
                check_buckets(&samples, "hongbao_request_duration_seconds", &labels, &histogram);
            }
        }
        let labels = [("shard", shard.to_string()), ("op", "other".into())];
        let other = s.latency_of(None).cloned().unwrap_or_default();
        let count = value(&samples, "hongbao_request_duration_seconds_count", &labels) as u64;
        assert_eq!(count, other.count(), "shard {shard}: other timed");
        if count > 0 {
            check_buckets(&samples, "hongbao_request_duration_seconds", &labels, &other);
        }
        let labels = [("shard", shard.to_string())];
        check_buckets(&samples, "hongbao_log_sync_seconds", &labels, &s.log_sync);
    }
    // One process: STATS read its memory a moment before the scrape did.
    let no_labels: [(&str, &str); 0] = [];
    let (stats_memory, scraped) =
        (stats[0].memory_bytes as f64, value(&samples, "hongbao_memory_bytes", &no_labels));
    assert!(
        scraped > 0.0 && (scraped - stats_memory).abs() <= stats_memory / 2.0,
        "{scraped} vs {stats_memory}"
    );
}

/// The endpoint's cumulative buckets and sum of one histogram against STATS's.
fn check_buckets(
    samples: &[Sample],
    name: &str,
    labels: &[(&str, String)],
    h: &hongbao_client::LatencyHistogram,
) {
    let mut cumulative = 0;
    for (i, bucket) in h.buckets.iter().enumerate() {
        cumulative += bucket;
        let le = h.bounds_us.get(i).map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
        let mut with_le = labels.to_vec();
        with_le.push(("le", le));
        let found = value(samples, &format!("{name}_bucket"), &with_le) as u64;
        assert_eq!(found, cumulative, "{name} {with_le:?}");
    }
    let sum_us = (value(samples, &format!("{name}_sum"), labels) * 1e6).round() as u64;
    assert_eq!(sum_us, h.sum_us, "{name} {labels:?} sum");
}
