//! Abuse: while a well-behaved client grabs and opens, others send garbage,
//! oversized lengths, half frames then silence, thousands of idle connections,
//! requests without reading answers, and hang up mid-frame. The good client
//! keeps getting correct answers, the money rules hold, and the server's
//! memory stays bounded.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use hongbao_client::{requests, Client};
use hongbao_protocol::body::EnvelopeKind;
use hongbao_protocol::{decode_frame, EnvelopeId, Request, Status};
use support::TestServer;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Reads until the server closes (or 30 s pass); returns what it sent.
fn read_to_close(mut stream: TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    all
}

fn attackers(addr: SocketAddr, stop: Arc<AtomicBool>) -> Vec<thread::JoinHandle<String>> {
    let mut threads = Vec::new();
    // Garbage.
    threads.push(thread::spawn(move || {
        for i in 0..20u8 {
            let mut s = TcpStream::connect(addr).unwrap();
            let junk: Vec<u8> = (0..200u32).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i)).collect();
            let _ = s.write_all(&junk);
            let answer = read_to_close(s);
            assert!(answer.len() <= 24, "garbage earns one error frame at most");
        }
        "garbage".to_string()
    }));
    // Oversized lengths.
    threads.push(thread::spawn(move || {
        for _ in 0..20 {
            let mut s = TcpStream::connect(addr).unwrap();
            let mut bytes = Vec::new();
            Request::Ping.encode(3, &mut bytes);
            bytes[8..12].copy_from_slice(&(1u32 << 30).to_le_bytes());
            s.write_all(&bytes).unwrap();
            let answer = read_to_close(s);
            let frame = decode_frame(&answer).unwrap().unwrap();
            // Busy when the idle flood holds every slot of this address.
            assert!(matches!(frame.header.status(), Status::FrameTooLarge | Status::Busy));
        }
        "oversized".to_string()
    }));
    // Half frames then silence, and hang-ups mid-frame.
    threads.push(thread::spawn(move || {
        let mut bytes = Vec::new();
        requests::grab(EnvelopeId::new(0, 1), 9).encode(1, &mut bytes);
        let slow: Vec<TcpStream> = (0..20)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(&bytes[..30]).unwrap();
                s
            })
            .collect();
        for _ in 0..50 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&bytes[..17]).unwrap();
            drop(s);
        }
        for s in slow {
            let answer = read_to_close(s);
            let told = decode_frame(&answer).ok().flatten().map(|f| (f.header.status(), f.wire_len()));
            // Busy when the idle flood holds every slot of this address.
            assert!(
                matches!(told, Some((Status::Timeout | Status::Busy, len)) if len == answer.len()),
                "a stalled frame is cut off with one status: {told:?}"
            );
        }
        "slowloris".to_string()
    }));
    // Requests without reading answers.
    threads.push(thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut bytes = Vec::new();
        for i in 0..2_000 {
            requests::query(EnvelopeId::new(0, 1), 0, 1024).encode(i + 1, &mut bytes);
        }
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) && sent < 200 {
            if s.write_all(&bytes).is_err() {
                break; // The server gave up on us: good.
            }
            sent += 1;
        }
        "non-reader".to_string()
    }));
    threads
}

#[test]
fn a_good_client_is_served_correctly_through_abuse() {
    let server = TestServer::start(2, &["--frame-timeout", "1", "--max-connections-per-ip", "400"]);
    let pid = server.child.id();
    let mut good = Client::connect(server.main).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let attack = attackers(server.main, stop.clone());
    // Thousands of idle connections: past the per-address limit they are told busy.
    let mut idle = Vec::new();
    let mut busy = 0;
    for _ in 0..1_200 {
        match TcpStream::connect(server.main) {
            Ok(s) => idle.push(s),
            Err(_) => busy += 1,
        }
    }
    for s in idle.iter_mut().take(1_200) {
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut answer = [0u8; 24];
        if let Ok(24) = s.read(&mut answer) {
            if decode_frame(&answer).ok().flatten().is_some_and(|f| f.header.status() == Status::Busy) {
                busy += 1;
            }
        }
    }
    assert!(busy > 0, "1,200 connections from one address were all let in");

    // The good client, all along.
    let mut paid = Vec::new();
    for round in 0..200u64 {
        let created = good.create(7, 1_000, 5, EnvelopeKind::Random, 0).unwrap();
        assert_eq!(created.status, Status::Ok);
        let envelope = created.body.unwrap().envelope;
        let mut sum = 0;
        for user in 1..=5 {
            assert_eq!(good.grab(envelope, round * 10 + user).unwrap().status, Status::Ok);
            let open = good.open(envelope, round * 10 + user).unwrap();
            assert_eq!(open.status, Status::Ok);
            sum += open.body.amount_cents;
        }
        assert_eq!(sum, 1_000, "the shares of an envelope add up");
        paid.push(envelope);
    }
    stop.store(true, Ordering::Relaxed);
    for thread in attack {
        let name = thread.join().expect("an attacker's expectation failed");
        assert!(!name.is_empty());
    }
    for envelope in paid {
        let report = good.query_all(envelope).unwrap().body.unwrap();
        assert_eq!(report.summary.paid_cents, 1_000);
        assert_eq!(report.claims.len(), 5);
    }
    let rss = rss_kib(pid);
    assert!(rss < 2 * 1024 * 1024, "server memory {rss} KiB is not bounded");
    drop(idle);
    assert_eq!(good.ping().unwrap(), Status::Ok);
}
