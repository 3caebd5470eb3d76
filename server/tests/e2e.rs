//! End to end: a real server with several shards, many concurrent users over
//! the main port and the shard-aware ports, then every money invariant checked
//! from QUERY.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;

use hongbao_client::{Client, ClientError};
use hongbao_protocol::body::{EnvelopeKind, EnvelopeState};
use hongbao_protocol::{EnvelopeId, Status};
use support::TestServer;

const SHARDS: u16 = 4;
const CAP: u64 = 20_000;

/// (envelope, user) -> every amount an OPEN answered OK with.
type Seen = Arc<Mutex<HashMap<(u64, u64), Vec<u64>>>>;

/// Creates `n` envelopes over several main-port connections, so the kernel
/// spreads them over the shards.
fn create_envelopes(server: &TestServer, n: u32) -> Vec<(EnvelopeId, u64, u32)> {
    let mut made = Vec::new();
    for i in 0..n {
        let mut client = Client::connect(server.main).unwrap();
        let count = 1 + (i * 7) % 40;
        let kind = if i % 5 == 0 { EnvelopeKind::Fixed } else { EnvelopeKind::Random };
        let total = match kind {
            EnvelopeKind::Fixed => u64::from(count) * (1 + u64::from(i)),
            EnvelopeKind::Random => u64::from(count) * 37 + u64::from(i),
        };
        let reply = client.create(1000 + u64::from(i), total, count, kind, 3600).unwrap();
        assert_eq!(reply.status, Status::Ok);
        let envelope = reply.body.unwrap().envelope;
        assert!(envelope.shard() < SHARDS);
        made.push((envelope, total, count));
    }
    made
}

/// One racing worker: every user grabs every envelope, and opens what it got.
fn race(mut client: Client, envelopes: Vec<(EnvelopeId, u64, u32)>, users: Vec<u64>, seen: Seen) {
    for (envelope, _, _) in &envelopes {
        for user in &users {
            let grab = client.grab(*envelope, *user).unwrap();
            assert!(
                matches!(grab.status, Status::Ok | Status::AlreadyGrabbed | Status::SoldOut),
                "grab answered {:?}",
                grab.status
            );
            let open = client.open(*envelope, *user).unwrap();
            match open.status {
                Status::Ok => {
                    let amount = open.body.amount_cents;
                    assert!((1..=CAP).contains(&amount));
                    seen.lock().unwrap().entry((envelope.0, *user)).or_default().push(amount);
                }
                Status::NoReservation => assert_eq!(grab.status, Status::SoldOut),
                other => panic!("open answered {other:?}"),
            }
        }
    }
}

/// Every invariant, from QUERY, against what the workers saw.
fn check_all(server: &TestServer, envelopes: &[(EnvelopeId, u64, u32)], seen: &Seen) {
    let seen = seen.lock().unwrap();
    let mut client = Client::connect(server.main).unwrap();
    for (envelope, total, count) in envelopes {
        let report = client.query_all(*envelope).unwrap();
        assert_eq!(report.status, Status::Ok);
        let report = report.body.unwrap();
        let s = report.summary;
        assert_eq!(s.total_cents, *total);
        assert_eq!(s.count, *count);
        assert_eq!(s.paid_cents + s.refunded_cents + s.remaining_cents, s.total_cents);
        assert_eq!(report.claims.len() as u32, s.paid_count);
        assert_eq!(report.claims.iter().map(|c| c.amount_cents).sum::<u64>(), s.paid_cents);
        // 24 users raced for at most 40 shares each; anyone who grabbed opened.
        if *count <= 24 {
            assert_eq!(s.state, EnvelopeState::Finished, "{envelope}");
            assert_eq!(s.paid_cents, *total);
        }
        let mut users = std::collections::HashSet::new();
        for (i, claim) in report.claims.iter().enumerate() {
            assert!(users.insert(claim.user), "user {} holds two shares of {envelope}", claim.user);
            assert_eq!(claim.order as usize, i + 1);
            assert!((1..=CAP).contains(&claim.amount_cents));
            let amounts = seen.get(&(envelope.0, claim.user)).expect("a claim nobody was told about");
            assert!(amounts.iter().all(|a| *a == claim.amount_cents), "OPEN answered two amounts");
        }
        if s.kind == EnvelopeKind::Fixed {
            assert!(report.claims.iter().all(|c| c.amount_cents == total / u64::from(*count)));
        }
        let best = report.claims.iter().fold(None::<&hongbao_client::Claim>, |best, c| match best {
            Some(b) if b.amount_cents >= c.amount_cents => Some(b),
            _ => Some(c),
        });
        assert_eq!(s.best_user, best.map_or(0, |b| b.user));
    }
    let told: usize = seen.keys().filter(|(e, _)| envelopes.iter().any(|(id, _, _)| id.0 == *e)).count();
    let paid: usize = envelopes
        .iter()
        .map(|(id, _, _)| client.query(*id, 0, 0).unwrap().body.unwrap().summary.paid_count as usize)
        .sum();
    assert_eq!(told, paid, "every OPEN that said OK is a claim, and no other");
}

#[test]
fn concurrent_users_over_main_and_shard_ports_keep_every_invariant() {
    let server = TestServer::start(SHARDS, &["--seed", "7"]);
    let envelopes = create_envelopes(&server, 60);
    let shards_used: std::collections::HashSet<u16> = envelopes.iter().map(|(e, _, _)| e.shard()).collect();
    assert!(shards_used.len() > 1, "envelopes all landed on one shard: {shards_used:?}");

    let seen: Seen = Arc::default();
    let mut workers = Vec::new();
    // Users 1..=24; each user is driven by two workers at once, one on the main
    // port and one on the owning shard's port, so duplicates race for real.
    for w in 0..6u64 {
        let users: Vec<u64> = (1..=24).filter(|u| u % 6 == w).collect();
        let main_client = Client::connect(server.main).unwrap();
        let (main_envs, main_seen, main_users) = (envelopes.clone(), seen.clone(), users.clone());
        workers.push(thread::spawn(move || race(main_client, main_envs, main_users, main_seen)));
        for shard in 0..SHARDS {
            let own: Vec<_> = envelopes.iter().filter(|(e, _, _)| e.shard() == shard).cloned().collect();
            let client = Client::connect(server.shard_addr(usize::from(shard))).unwrap();
            let (seen, users) = (seen.clone(), users.clone());
            workers.push(thread::spawn(move || race(client, own, users, seen)));
        }
    }
    for worker in workers {
        worker.join().unwrap();
    }
    check_all(&server, &envelopes, &seen);

    // Forwarding happened, and every shard served connections.
    let mut forwarded = 0;
    for shard in 0..usize::from(SHARDS) {
        let mut client = Client::connect(server.shard_addr(shard)).unwrap();
        let stats = client.stats().unwrap().body.unwrap();
        assert_eq!(usize::from(stats.shard_id), shard);
        forwarded += stats.forwarded_out;
    }
    assert!(forwarded > 0, "no request went through the mesh");
}

#[test]
fn pipelined_shard_aware_client_agrees_with_query() {
    let server = TestServer::start(SHARDS, &[]);
    let envelopes = create_envelopes(&server, 20);
    let main = server.main;
    let envs = envelopes.clone();
    let seen: HashMap<(u64, u64), u64> = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let mut client = hongbao_client::glommio_net::connect_sharded(main, b"", 512).await.unwrap();
            assert_eq!(client.shard_count(), usize::from(SHARDS));
            let mut seen = HashMap::new();
            for user in 1..=30u64 {
                let mut ids = HashMap::new();
                for (envelope, _, _) in &envs {
                    let (shard, id) = client.push(&hongbao_client::requests::grab(*envelope, user)).unwrap();
                    ids.insert((shard, id), envelope.0);
                    let (shard, id) = client.push(&hongbao_client::requests::open(*envelope, user)).unwrap();
                    ids.insert((shard, id), envelope.0);
                }
                client.flush().await.unwrap();
                for shard in 0..client.shard_count() {
                    let pipeline = client.shard_mut(shard).unwrap();
                    while let Some(answer) = pipeline.next().await.unwrap() {
                        let envelope = ids.remove(&(shard, answer.request_id)).expect("answer to no request");
                        if let hongbao_client::AnswerBody::Open(opened) = answer.body {
                            if answer.status == Status::Ok {
                                assert!(seen.insert((envelope, user), opened.amount_cents).is_none());
                            }
                        }
                    }
                }
                assert!(ids.is_empty(), "unanswered requests: {}", ids.len());
            }
            seen
        })
        .unwrap()
        .join()
        .unwrap();
    let seen: Seen = Arc::new(Mutex::new(seen.into_iter().map(|(k, v)| (k, vec![v])).collect()));
    check_all(&server, &envelopes, &seen);
}

#[test]
fn a_malformed_frame_closes_only_its_connection() {
    use std::io::{Read, Write};
    let server = TestServer::start(2, &[]);
    let mut good = Client::connect(server.main).unwrap();
    assert_eq!(good.ping().unwrap(), Status::Ok);

    let mut bad = std::net::TcpStream::connect(server.main).unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    bad.read_to_end(&mut answer).unwrap();
    assert_eq!(answer.len(), 24, "one error frame, then the close");
    let frame = hongbao_protocol::decode_frame(&answer).unwrap().unwrap();
    assert_eq!(frame.header.status(), Status::MalformedFrame);

    // An unknown opcode is answered and the connection goes on.
    let mut odd = std::net::TcpStream::connect(server.main).unwrap();
    let mut bytes = Vec::new();
    hongbao_protocol::Request::Ping.encode(9, &mut bytes);
    bytes[3] = 0x7f;
    hongbao_protocol::Request::Ping.encode(10, &mut bytes);
    odd.write_all(&bytes).unwrap();
    let mut answers = [0u8; 48];
    odd.read_exact(&mut answers).unwrap();
    let first = hongbao_protocol::decode_frame(&answers).unwrap().unwrap();
    assert_eq!((first.request_id(), first.header.opcode), (9, 0x7f));
    assert_eq!(first.header.status(), Status::UnknownOpcode);
    let second = hongbao_protocol::decode_frame(&answers[24..]).unwrap().unwrap();
    assert_eq!((second.request_id(), second.header.status()), (10, Status::Ok));

    assert_eq!(good.ping().unwrap(), Status::Ok);
    let created = good.create(1, 100, 2, EnvelopeKind::Random, 0).unwrap();
    assert_eq!(created.status, Status::Ok);
}

#[test]
fn oversized_length_is_refused_before_the_body_arrives() {
    use std::io::{Read, Write};
    let server = TestServer::start(1, &[]);
    let mut bad = std::net::TcpStream::connect(server.main).unwrap();
    let mut bytes = Vec::new();
    hongbao_protocol::Request::Ping.encode(5, &mut bytes);
    bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    bad.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    bad.read_to_end(&mut answer).unwrap();
    let frame = hongbao_protocol::decode_frame(&answer).unwrap().unwrap();
    assert_eq!((frame.request_id(), frame.header.status()), (5, Status::FrameTooLarge));
}

#[test]
fn refused_requests_get_their_status() {
    let server = TestServer::start(2, &["--max-envelopes", "1"]);
    let mut client = Client::connect(server.main).unwrap();
    assert_eq!(client.create(1, 10, 20, EnvelopeKind::Random, 0).unwrap().status, Status::TotalTooSmall);
    assert_eq!(client.create(1, 100, 0, EnvelopeKind::Random, 0).unwrap().status, Status::CountOutOfRange);
    let envelope = client.create(1, 100, 1, EnvelopeKind::Fixed, 0).unwrap().body.unwrap().envelope;
    assert_eq!(client.create(1, 100, 1, EnvelopeKind::Fixed, 0).unwrap().status, Status::ServerFull);
    assert_eq!(client.open(envelope, 5).unwrap().status, Status::NoReservation);
    assert_eq!(client.grab(envelope, 5).unwrap().status, Status::Ok);
    assert_eq!(client.grab(envelope, 6).unwrap().status, Status::SoldOut);
    assert_eq!(client.open(envelope, 5).unwrap().body.amount_cents, 100);
    // An id naming a shard the server does not have is simply not found.
    assert_eq!(client.grab(EnvelopeId::new(900, 1), 5).unwrap().status, Status::NotFound);
    let hello = client.hello().unwrap().body.unwrap();
    assert_eq!(hello.shard_ports, server.shard_ports);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let server = TestServer::start(2, &[]);
    let mut client = Client::connect(server.main).unwrap();
    assert_eq!(client.ping().unwrap(), Status::Ok);
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(matches!(client.ping(), Err(ClientError::Closed { .. } | ClientError::Io { .. })));
}

#[test]
fn the_configured_body_limit_is_enforced_and_announced() {
    use std::io::{Read, Write};
    let server = TestServer::start(1, &["--max-body-bytes", "600"]);
    let mut client = Client::connect(server.main).unwrap();
    assert_eq!(client.hello().unwrap().body.unwrap().max_body_len, 600);
    let mut bad = std::net::TcpStream::connect(server.main).unwrap();
    let mut bytes = Vec::new();
    hongbao_protocol::Request::Ping.encode(8, &mut bytes);
    bytes[8..12].copy_from_slice(&601u32.to_le_bytes());
    bad.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    bad.read_to_end(&mut answer).unwrap();
    let frame = hongbao_protocol::decode_frame(&answer).unwrap().unwrap();
    assert_eq!((frame.request_id(), frame.header.status()), (8, Status::FrameTooLarge));
    assert_eq!(client.ping().unwrap(), Status::Ok, "other connections go on");
}

/// Creates `n` envelopes expiring `expires_in_secs` from now, pipelined in
/// batches, so that they all fall due within a few milliseconds of each other
/// however slowly a loaded test machine answers one request at a time.
fn create_pipelined(main: std::net::SocketAddr, n: u64, expires_in_secs: u32) -> Vec<EnvelopeId> {
    const BATCH: u64 = 500;
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let mut client =
                hongbao_client::glommio_net::connect_sharded(main, b"", BATCH as usize).await.unwrap();
            let mut ids = Vec::new();
            for start in (0..n).step_by(BATCH as usize) {
                for i in start..n.min(start + BATCH) {
                    let create = hongbao_client::requests::create(
                        1 + i,
                        200,
                        2,
                        EnvelopeKind::Random,
                        expires_in_secs,
                    );
                    client.push(&create).unwrap();
                }
                client.flush().await.unwrap();
                for shard in 0..client.shard_count() {
                    let pipeline = client.shard_mut(shard).unwrap();
                    while let Some(answer) = pipeline.next().await.unwrap() {
                        assert_eq!(answer.status, Status::Ok);
                        let hongbao_client::AnswerBody::Create(Some(created)) = answer.body else {
                            panic!("create answered as {:?}", answer.body)
                        };
                        ids.push(created.envelope);
                    }
                }
            }
            ids
        })
        .unwrap()
        .join()
        .unwrap()
}

/// The shard's timers run in slices (`TICK_SLICE`, 256) with the socket loop
/// served in between: a backlog of many slices (3,000 envelopes that expire
/// together, then leave together with no retention) is worked off entirely,
/// while the connection keeps being answered.
#[test]
fn a_backlog_of_expiries_and_evictions_is_worked_off() {
    let server = TestServer::start(1, &["--retention", "0"]);
    // Two seconds leave room for a machine busy with the other tests between
    // the creates and the first STATS below.
    let ids = create_pipelined(server.main, 3_000, 2);
    assert_eq!(ids.len(), 3_000);
    let mut client = Client::connect(server.main).unwrap();
    let last = *ids.last().unwrap();
    assert_eq!(client.grab(last, 7).unwrap().status, Status::Ok);
    assert_eq!(client.open(last, 7).unwrap().status, Status::Ok);
    let held = |client: &mut Client| client.stats().unwrap().body.unwrap().envelopes;
    assert!(held(&mut client) > 256, "more than one slice of envelopes is due at once");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while held(&mut client) > 0 {
        assert!(std::time::Instant::now() < deadline, "{} envelopes still held", held(&mut client));
        assert_eq!(client.ping().unwrap(), Status::Ok, "the connection is served meanwhile");
        thread::sleep(std::time::Duration::from_millis(20));
    }
    for id in [ids[0], last] {
        assert_eq!(client.query(id, 0, 0).unwrap().status, Status::NotFound, "evicted");
    }
}

/// `--prefault-mib` is memory each shard holds resident before it says it is
/// ready, and the server then serves as usual.
#[test]
fn prefaulted_shards_hold_their_memory_before_ready_and_serve() {
    fn resident_kib(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    let plain = TestServer::start(2, &["--durability", "none"]);
    let plain_kib = resident_kib(plain.child.id());
    drop(plain);
    let server = TestServer::start(2, &["--durability", "none", "--prefault-mib", "48"]);
    let kib = resident_kib(server.child.id());
    // Nine tenths: the two processes' other memory differs by a few pages.
    let wanted = plain_kib + 2 * 48 * 1024 * 9 / 10;
    assert!(kib >= wanted, "2 shards x 48 MiB on top of {plain_kib} KiB: {kib} KiB resident");
    let mut client = Client::connect(server.main).unwrap();
    let envelope = client.create(1, 300, 3, EnvelopeKind::Random, 60).unwrap().body.unwrap().envelope;
    assert_eq!(client.grab(envelope, 7).unwrap().status, Status::Ok);
    let opened = client.open(envelope, 7).unwrap();
    assert_eq!(opened.status, Status::Ok);
    assert!((1..=298).contains(&opened.body.amount_cents), "{:?}", opened.body);
}
