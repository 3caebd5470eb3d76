//! Disk full: the log's filesystem fills up under load. Nothing unacknowledged
//! may be reported as done, nothing acknowledged may be lost, the shard answers
//! `unavailable` for changes and goes on answering reads.
//!
//! Needs root (a loop-mounted ext4 image); elsewhere it says why and skips.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hongbao_client::{Client, ClientError};
use hongbao_protocol::body::EnvelopeKind;
use hongbao_protocol::{EnvelopeId, Status};
use support::TestServer;

/// A small ext4 filesystem mounted on a loop device; unmounted when dropped.
struct SmallDisk {
    root: PathBuf,
    mount: PathBuf,
}

impl SmallDisk {
    fn new() -> Result<SmallDisk, String> {
        let uid = Command::new("id").arg("-u").output().map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not running as root".into());
        }
        let root = std::env::temp_dir().join(format!("hongbao-disk-full-{}", std::process::id()));
        let mount = root.join("mnt");
        std::fs::create_dir_all(&mount).map_err(|e| e.to_string())?;
        let image = root.join("disk.img");
        let run = |cmd: &mut Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
            }
        };
        run(Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", image.display())).args([
            "bs=1M",
            "count=8",
            "status=none",
        ]))?;
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
        run(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&mount))?;
        let disk = SmallDisk { root, mount };
        // Leave about 192 KiB free: a few thousand records fill it.
        let free = fs_free_bytes(&disk.mount)?;
        let filler = free.saturating_sub(192 * 1024);
        run(Command::new("fallocate").args(["-l", &filler.to_string()]).arg(disk.mount.join("filler")))?;
        Ok(disk)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn fs_free_bytes(path: &Path) -> Result<u64, String> {
    let out =
        Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).and_then(|l| l.trim().parse().ok()).ok_or_else(|| format!("cannot read df: {text}"))
}

#[test]
fn a_full_disk_refuses_changes_and_loses_nothing_acknowledged() {
    let disk = match SmallDisk::new() {
        Ok(disk) => disk,
        Err(why) => {
            println!("disk_full test skipped: {why}");
            return;
        }
    };
    let data = disk.mount.join("data");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let server = TestServer::start_with_data(1, &["--metrics", &metrics.to_string()], data.clone());
    let mut client = Client::connect(server.main).unwrap();
    let mut envelopes: Vec<(EnvelopeId, u64)> = Vec::new();
    let mut acked: HashMap<(u64, u64), u64> = HashMap::new();
    let mut refused = false;
    let mut user = 0u64;
    'load: for round in 0..100_000u64 {
        if round % 40 == 0 {
            match client.create(1, 10_000, 40, EnvelopeKind::Random, 0) {
                Ok(reply) if reply.status == Status::Ok => {
                    envelopes.push((reply.body.unwrap().envelope, 10_000))
                }
                Ok(reply) if reply.status == Status::Unavailable => {
                    refused = true;
                    break 'load;
                }
                Ok(reply) => panic!("create answered {}", reply.status),
                Err(ClientError::Closed { .. } | ClientError::Io { .. }) => break 'load,
                Err(e) => panic!("{e}"),
            }
        }
        user += 1;
        let envelope = envelopes.last().unwrap().0;
        match client.grab(envelope, user).map(|r| r.status) {
            Ok(Status::Ok | Status::SoldOut) => {}
            Ok(Status::Unavailable) => {
                refused = true;
                break;
            }
            Ok(other) => panic!("grab answered {other}"),
            Err(e) => {
                println!("grab ended the load: {e}");
                break;
            }
        }
        match client.open(envelope, user) {
            Ok(reply) if reply.status == Status::Ok => {
                acked.insert((envelope.0, user), reply.body.amount_cents);
            }
            Ok(reply) if reply.status == Status::Unavailable => {
                refused = true;
                break;
            }
            Ok(reply) if reply.status == Status::NoReservation => {}
            Ok(reply) => panic!("open answered {}", reply.status),
            // The write failed under this open: its connection closes and no
            // answer claims it was done.
            Err(e) => {
                println!("open ended the load: {e}");
                break;
            }
        }
    }
    assert!(!acked.is_empty(), "nothing was acknowledged before the disk filled");
    // The disk is full: changes are refused (on a new connection too), reads go on.
    let mut reader = Client::connect(server.main).unwrap();
    assert_eq!(reader.ping().unwrap(), Status::Ok);
    let (first, _) = envelopes[0];
    assert_eq!(reader.query(first, 0, 0).unwrap().status, Status::Ok, "reads must go on");
    let create = reader.create(1, 100, 2, EnvelopeKind::Random, 0).unwrap();
    assert_eq!(create.status, Status::Unavailable, "a change on a full disk (refused before: {refused})");
    // What decides before a change still answers: a client that lost its
    // connection in the failure and asks again learns what it was paid. (Of
    // the first envelope: every change to it was acknowledged, so durable,
    // before the next one was made. The last one's latest change may be in
    // the write that failed; a repeat there waits on it, and its connection
    // closes with its outcome unknown, as the rest of the test allows.)
    assert!(envelopes.len() > 1, "the disk filled during the first envelope");
    let (&(envelope, user), &amount) = acked
        .iter()
        .filter(|((env, _), _)| *env == first.0)
        .min_by_key(|((_, user), _)| *user)
        .expect("an acknowledged open of the first envelope");
    let again = reader.open(EnvelopeId(envelope), user).unwrap();
    assert_eq!(
        (again.status, again.body.amount_cents),
        (Status::Ok, amount),
        "a repeated OPEN after the failure"
    );
    let grabbed = reader.grab(EnvelopeId(envelope), user).unwrap();
    assert_eq!((grabbed.status, grabbed.body.amount_cents), (Status::AlreadyGrabbed, amount));
    // And of the last envelope, whose latest change may be in the write that
    // failed: an acknowledged payment was written, so it answers all the same.
    let (last, _) = *envelopes.last().unwrap();
    for (&(_, user), &amount) in acked.iter().filter(|((env, _), _)| *env == last.0) {
        let again = reader.open(last, user).unwrap();
        assert_eq!((again.status, again.body.amount_cents), (Status::Ok, amount), "user {user} of {last}");
    }
    assert_eq!(reader.grab(first, 0).unwrap().status, Status::InvalidArgument);
    assert_eq!(reader.grab(EnvelopeId::new(0, 0xFF_FFFF), 1).unwrap().status, Status::NotFound);
    // The server's log lines go out through its own thread: waited for, not
    // looked for at once.
    let mut lines = Vec::new();
    let logged = std::iter::from_fn(|| server.log.recv_timeout(std::time::Duration::from_secs(30)).ok())
        .inspect(|line| lines.push(line.clone()))
        .any(|line| line.contains("the log cannot write"));
    assert!(logged, "the server logs why it refuses changes: {lines:?}");
    // And its metrics say so, once the shard has published (it does every 10 ms).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !support::prometheus::scrape(metrics).contains("hongbao_log_failed{shard=\"0\"} 1") {
        assert!(std::time::Instant::now() < deadline, "no hongbao_log_failed 1 in 30 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(server);

    // Everything acknowledged is in the log: recover a copy on a roomy disk.
    let copy = std::env::temp_dir().join(format!("hongbao-disk-full-copy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    assert!(Command::new("cp").arg("-r").arg(&data).arg(&copy).status().unwrap().success());
    drop(disk);
    let server = TestServer::start_with_data(1, &[], copy.clone());
    let mut client = Client::connect(server.main).unwrap();
    for (envelope, total) in &envelopes {
        let report = client.query_all(*envelope).unwrap();
        assert_eq!(report.status, Status::Ok, "acknowledged envelope {envelope} lost");
        let report = report.body.unwrap();
        assert_eq!(report.summary.total_cents, *total);
        let s = report.summary;
        assert_eq!(s.paid_cents + s.refunded_cents + s.remaining_cents, s.total_cents);
        let claims: HashMap<u64, u64> = report.claims.iter().map(|c| (c.user, c.amount_cents)).collect();
        for ((env, user), amount) in acked.iter().filter(|((env, _), _)| *env == envelope.0) {
            assert_eq!(claims.get(user), Some(amount), "acknowledged open of {user} in {env} lost");
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&copy);
}
