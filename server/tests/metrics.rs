//! The metrics endpoint: it parses as Prometheus text, and its counters match
//! the requests a test sent.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hongbao_client::Client;
use hongbao_protocol::body::EnvelopeKind;
use hongbao_protocol::{EnvelopeId, Status};
use support::prometheus::{parse, scrape, Sample};
use support::TestServer;

fn requests(samples: &[Sample], op: &str, status: &str) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == "hongbao_requests_total" && l["op"] == op && l["status"] == status)
        .map(|(_, _, v)| v)
        .sum()
}

#[test]
fn the_endpoint_counts_what_was_sent() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = format!("127.0.0.1:{port}");
    let server = TestServer::start(2, &["--metrics", &metrics]);
    let mut client = Client::connect(server.main).unwrap();
    let mut envelopes = Vec::new();
    for _ in 0..3 {
        envelopes.push(client.create(1, 100, 2, EnvelopeKind::Random, 0).unwrap().body.unwrap().envelope);
    }
    for user in 1..=3 {
        let status = client.grab(envelopes[0], user).unwrap().status;
        assert_eq!(status, if user <= 2 { Status::Ok } else { Status::SoldOut });
    }
    for user in 1..=2 {
        assert_eq!(client.open(envelopes[0], user).unwrap().status, Status::Ok);
    }
    assert_eq!(client.query(EnvelopeId::new(0, 999), 0, 0).unwrap().status, Status::NotFound);

    // Each shard publishes on its own tick, and the requests went to both:
    // poll (bounded) until the last request of each kind is in, and the
    // last answer's duration too (it is taken when its send completes, which
    // a busy machine may publish a tick after the request's count).
    let addr = metrics.parse().unwrap();
    let sum = |samples: &[Sample], name: &str| {
        samples.iter().filter(|(n, _, _)| n == name).map(|(_, _, v)| v).sum::<f64>()
    };
    let mut samples = Vec::new();
    for _ in 0..100 {
        samples = parse(&scrape(addr));
        let arrived = [("create", "ok", 3.0), ("open", "ok", 2.0), ("query", "not_found", 1.0)];
        if arrived.iter().all(|(op, status, n)| requests(&samples, op, status) == *n)
            && sum(&samples, "hongbao_request_duration_seconds_count") >= 9.0
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(requests(&samples, "create", "ok"), 3.0);
    assert_eq!(requests(&samples, "grab", "ok"), 2.0);
    assert_eq!(requests(&samples, "grab", "sold_out"), 1.0);
    assert_eq!(requests(&samples, "open", "ok"), 2.0);
    assert_eq!(requests(&samples, "query", "not_found"), 1.0);
    let value = |name: &str| sum(&samples, name);
    assert_eq!(value("hongbao_envelopes"), 3.0);
    assert_eq!(value("hongbao_claims"), 6.0);
    assert_eq!(value("hongbao_up"), 1.0);
    assert!(value("hongbao_connections") >= 1.0);
    assert!(value("hongbao_bytes_received_total") > 0.0);
    assert!(value("hongbao_log_syncs_total") >= 1.0, "changes were logged");
    assert!(value("hongbao_request_duration_seconds_count") >= 9.0);
    assert!(value("hongbao_memory_bytes") > 0.0);

    let mut other = TcpStream::connect(addr).unwrap();
    other.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut response = String::new();
    other.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 404"));
}

/// A shard's loop kept from running while it should be turning shows as a
/// loop stall: here the whole process is stopped for 150 ms while the loop
/// spins after a request (`--spin-us` 1 s, so it has not parked).
#[test]
fn a_loop_kept_from_running_shows_as_a_stall() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = format!("127.0.0.1:{port}");
    let server = TestServer::start(1, &["--metrics", &metrics, "--spin-us", "1000000"]);
    let mut client = Client::connect(server.main).unwrap();
    assert_eq!(client.ping().unwrap(), Status::Ok);
    let pid = server.child.id().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill").args([name, &pid]).status().unwrap();
        assert!(status.success(), "kill {name} {pid}");
    };
    signal("-STOP");
    std::thread::sleep(Duration::from_millis(150));
    signal("-CONT");

    let addr = metrics.parse().unwrap();
    let value = |samples: &[Sample], name: &str| {
        samples.iter().filter(|(n, l, _)| n == name && l["shard"] == "0").map(|(_, _, v)| *v).sum::<f64>()
    };
    let mut samples = Vec::new();
    for _ in 0..100 {
        samples = parse(&scrape(addr));
        if value(&samples, "hongbao_loop_stalls_total") >= 1.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(value(&samples, "hongbao_loop_stalls_total") >= 1.0, "the stop was not counted");
    let longest = value(&samples, "hongbao_loop_stall_max_microseconds");
    assert!(longest >= 140_000.0, "the longest stall is {longest} us, the stop was 150 ms");
    assert!(value(&samples, "hongbao_loop_stall_microseconds_total") >= longest);
}

/// The socket loop's time splits into busy (turns that found work) and idle
/// (turns that found none, and parks): requests make busy time, a quiet
/// spell makes idle time and next to no busy time. `spin`: how long the loop
/// spins before it parks (1 s: the quiet spell is all idle turns).
fn busy_and_idle(spin_us: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = format!("127.0.0.1:{port}");
    let server = TestServer::start(1, &["--metrics", &metrics, "--spin-us", spin_us]);
    let addr = metrics.parse().unwrap();
    let value = |samples: &[Sample], name: &str| {
        samples.iter().filter(|(n, l, _)| n == name && l["shard"] == "0").map(|(_, _, v)| *v).sum::<f64>()
    };
    let busy = "hongbao_loop_busy_microseconds_total";
    let idle = "hongbao_loop_idle_microseconds_total";
    let mut client = Client::connect(server.main).unwrap();
    for _ in 0..2_000 {
        assert_eq!(client.ping().unwrap(), Status::Ok);
    }
    let mut before = Vec::new();
    for _ in 0..100 {
        before = parse(&scrape(addr));
        if value(&before, busy) > 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(value(&before, busy) > 0.0, "2,000 answered pings made no busy time");

    let quiet_us = 400_000.0;
    std::thread::sleep(Duration::from_micros(quiet_us as u64));
    let mut after = Vec::new();
    for _ in 0..100 {
        after = parse(&scrape(addr));
        if value(&after, idle) - value(&before, idle) >= quiet_us / 2.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let idle_grew = value(&after, idle) - value(&before, idle);
    let busy_grew = value(&after, busy) - value(&before, busy);
    assert!(idle_grew >= quiet_us / 2.0, "idle grew by {idle_grew} us over a {quiet_us} us quiet spell");
    assert!(busy_grew < idle_grew, "busy grew by {busy_grew} us, idle by {idle_grew} us, with nothing to do");
}

#[test]
fn a_spinning_loop_counts_its_busy_and_idle_time() {
    busy_and_idle("1000000");
}

#[test]
fn a_parking_loop_counts_its_parks_as_idle() {
    busy_and_idle("0");
}

/// A parked loop wakes on its own timer at least every 100 ms, so an idle
/// server's loops keep turning and the watchdog (which signals a shard whose
/// loop has not turned for a second) has nothing to do: the series is there
/// for every shard, at 0, after well over a second of parking.
#[test]
fn an_idle_parking_server_is_never_nudged() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = format!("127.0.0.1:{port}");
    let server = TestServer::start(2, &["--metrics", &metrics, "--spin-us", "0"]);
    let mut client = Client::connect(server.main).unwrap();
    assert_eq!(client.ping().unwrap(), Status::Ok);
    std::thread::sleep(Duration::from_millis(2_500));
    let samples = parse(&scrape(metrics.parse().unwrap()));
    let nudges: Vec<(String, f64)> = samples
        .iter()
        .filter(|(n, _, _)| n == "hongbao_shard_nudges_total")
        .map(|(_, l, v)| (l["shard"].clone(), *v))
        .collect();
    assert_eq!(nudges, [("0".to_string(), 0.0), ("1".to_string(), 0.0)]);
    // And the zeros come from a watchdog that runs.
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", server.child.id()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    assert!(threads.iter().any(|name| name == "watchdog"), "no watchdog thread among {threads:?}");
    assert_eq!(client.ping().unwrap(), Status::Ok, "still answering");
}

/// A client that sends its request a byte at a time, slower than any read
/// timeout would notice, holds the one-at-a-time endpoint only until the
/// request's deadline: a scrape behind it is answered while it still dribbles.
#[test]
fn a_dribbling_client_does_not_hold_the_endpoint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = format!("127.0.0.1:{port}");
    let _server = TestServer::start(1, &["--metrics", &metrics]);
    let addr: std::net::SocketAddr = metrics.parse().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (started_tx, started) = std::sync::mpsc::channel();
    let dribbler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(b"G").unwrap();
            started_tx.send(()).unwrap();
            // 60 bytes, one every second: a minute, without a newline.
            // (Once the server has given up on it, the writes fail; it
            // dribbles on regardless, so "done" means a minute went by.)
            for _ in 0..60 {
                std::thread::sleep(Duration::from_secs(1));
                let _ = stream.write_all(b"G");
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    // The dribbler is connected and has begun its request: the endpoint
    // is busy with it before the scrape arrives (it serves one at a time).
    started.recv().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let text = scrape(addr);
    assert!(!done.load(std::sync::atomic::Ordering::SeqCst), "answered only after the dribbler's minute");
    assert!(text.contains("hongbao_up"), "{text}");
    // The dribbler is left to finish its minute on its own.
    drop(dribbler);
}

/// Connections that once held a burst and then go idle give that memory back
/// (`hongbao_connection_buffer_bytes`): ten thousand idle connections must not
/// each keep a burst's worth of buffers.
#[test]
fn idle_connections_give_back_their_buffers() {
    use hongbao_protocol::Request;
    const CONNS: usize = 8;
    const PINGS: u64 = 10_000;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = format!("127.0.0.1:{port}");
    let server = TestServer::start(1, &["--metrics", &metrics]);
    let addr = metrics.parse().unwrap();
    let buffers = || {
        let samples = parse(&scrape(addr));
        samples.iter().find(|(n, _, _)| n == "hongbao_connection_buffer_bytes").map(|(_, _, v)| *v).unwrap()
    };
    let mut burst = Vec::new();
    for id in 1..=PINGS {
        Request::Ping.encode(id, &mut burst);
    }
    // Each connection sends its burst and reads nothing yet: the server's
    // buffers fill up to their limits and stay full.
    let streams: Vec<TcpStream> = (0..CONNS).map(|_| TcpStream::connect(server.main).unwrap()).collect();
    let writers: Vec<_> = streams
        .iter()
        .map(|s| {
            let (mut stream, burst) = (s.try_clone().unwrap(), burst.clone());
            std::thread::spawn(move || stream.write_all(&burst).unwrap())
        })
        .collect();
    let full = (CONNS * 64 * 1024) as f64;
    let mut held = 0.0;
    for _ in 0..200 {
        held = buffers();
        if held >= full {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(held >= full, "the bursts were buffered: {held} bytes");
    // Every answer read, then nothing more: the connections are idle.
    for mut stream in &streams {
        let mut answers = vec![0u8; 64 * 1024];
        let mut pings = 0;
        let mut read = 0;
        while pings < PINGS {
            let n = stream.read(&mut answers[read..]).unwrap();
            assert!(n > 0, "the server closed the connection");
            read += n;
            let mut at = 0;
            while read - at >= 24 {
                let len = 24 + u32::from_le_bytes(answers[at + 8..at + 12].try_into().unwrap()) as usize;
                if read - at < len {
                    break;
                }
                at += len;
                pings += 1;
            }
            answers.copy_within(at..read, 0);
            read -= at;
        }
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let idle = (CONNS * 3 * 4096) as f64;
    for _ in 0..500 {
        held = buffers();
        if held <= idle {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(held <= idle, "{CONNS} idle connections still hold {held} bytes of buffers");
    drop(streams);
}
