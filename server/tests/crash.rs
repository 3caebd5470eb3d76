//! Crash: concurrent grabs and opens, the server killed with SIGKILL at random
//! moments, restarted on the same data directory; every acknowledged CREATE and
//! OPEN must be back with the same amount, and every money rule must hold.
//!
//! `HONGBAO_CRASH_CYCLES` sets the number of cycles (default 4; the soak
//! script `server/tests/soak-crash.sh` runs hundreds).

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use hongbao_client::Client;
use hongbao_protocol::body::EnvelopeKind;
use hongbao_protocol::{EnvelopeId, Status};
use support::TestServer;

/// (envelope, user) -> amount an OPEN acknowledged.
type Acked = Arc<Mutex<HashMap<(u64, u64), u64>>>;

fn worker(
    addr: std::net::SocketAddr,
    envelopes: Vec<EnvelopeId>,
    users: std::ops::Range<u64>,
    acked: Acked,
    stop: Arc<AtomicBool>,
) {
    let Ok(mut client) = Client::connect(addr) else { return };
    for user in users {
        for envelope in &envelopes {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(grab) = client.grab(*envelope, user) else { return };
            if !matches!(grab.status, Status::Ok | Status::AlreadyGrabbed) {
                continue;
            }
            let Ok(open) = client.open(*envelope, user) else { return };
            if open.status == Status::Ok {
                let mut acked = acked.lock().unwrap();
                let before = acked.insert((envelope.0, user), open.body.amount_cents);
                assert!(before.is_none_or(|b| b == open.body.amount_cents), "an OPEN answered two amounts");
            }
        }
    }
}

fn check(server: &TestServer, envelopes: &[(EnvelopeId, u64)], acked: &Acked) {
    let acked = acked.lock().unwrap();
    let mut client = Client::connect(server.main).unwrap();
    for (envelope, total) in envelopes {
        let reply = client.query_all(*envelope).unwrap();
        assert_eq!(reply.status, Status::Ok, "acknowledged envelope {envelope} lost");
        let report = reply.body.unwrap();
        let s = report.summary;
        assert_eq!(s.total_cents, *total);
        assert_eq!(s.paid_cents + s.refunded_cents + s.remaining_cents, s.total_cents);
        assert_eq!(report.claims.iter().map(|c| c.amount_cents).sum::<u64>(), s.paid_cents);
        let mut users = HashSet::new();
        let claims: HashMap<u64, u64> = report.claims.iter().map(|c| (c.user, c.amount_cents)).collect();
        for claim in &report.claims {
            assert!(users.insert(claim.user), "user {} holds two shares of {envelope}", claim.user);
        }
        for ((env, user), amount) in acked.iter().filter(|((env, _), _)| *env == envelope.0) {
            assert_eq!(
                claims.get(user),
                Some(amount),
                "acknowledged open of user {user} in {env} lost or changed"
            );
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_open() {
    let cycles: u64 = std::env::var("HONGBAO_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    println!("crash test seed {seed}");
    let mut rng = seed | 1;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };

    // Snapshots every 200 records, so crashes also land during and after them.
    let mut server = TestServer::start(2, &["--snapshot-every", "200"]);
    let mut envelopes = Vec::new();
    for i in 0..12u64 {
        let mut client = Client::connect(server.main).unwrap();
        let total = 500 + i * 37;
        let reply = client.create(1, total, 40, EnvelopeKind::Random, 0).unwrap();
        assert_eq!(reply.status, Status::Ok);
        envelopes.push((reply.body.unwrap().envelope, total));
    }
    let acked: Acked = Arc::default();
    let ids: Vec<EnvelopeId> = envelopes.iter().map(|(e, _)| *e).collect();
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4u64)
            .map(|w| {
                let users = (cycle * 1000 + w * 100 + 1)..(cycle * 1000 + w * 100 + 100);
                let (addr, ids, acked, stop) = (server.main, ids.clone(), acked.clone(), stop.clone());
                thread::spawn(move || worker(addr, ids, users, acked, stop))
            })
            .collect();
        thread::sleep(Duration::from_millis(20 + next(300)));
        server = server.crash_and_restart();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        check(&server, &envelopes, &acked);
    }
    assert!(!acked.lock().unwrap().is_empty(), "no open was acknowledged at all: the test tested nothing");
    let snapshots = (0..2)
        .flat_map(|shard| std::fs::read_dir(server.data_dir.join(format!("shard-{shard}"))).unwrap())
        .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|e| e == "snap"))
        .count();
    assert!(snapshots > 0, "no snapshot was taken: recovery from snapshots went untested");
    server.owns_data = true;
}
