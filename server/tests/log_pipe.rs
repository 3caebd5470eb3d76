//! A server whose log reader went away keeps serving and stops cleanly: a
//! log line written to a closed pipe is dropped, not a panic (which the
//! release build turns into an abort of every shard). And a log pipe that is
//! open but not read does not stop the shards either: their lines wait in
//! the log's queue, not in a blocked write on the shard's thread.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hongbao_client::Client;
use hongbao_protocol::body::EnvelopeKind;
use hongbao_protocol::Status;

#[test]
fn a_closed_log_pipe_neither_stops_nor_crashes_the_server() {
    let (port, data_dir, mut child) = spawn_server("pipe");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = lines.by_ref().map_while(Result::ok).any(|line| line.contains("ready:"));
    assert!(ready, "no ready line: {:?}", child.wait());
    // The reader goes away: the next line the server writes meets EPIPE.
    drop(lines);

    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = Client::connect(addr).unwrap();
    for round in 0..40u64 {
        let created = client.create(1, 500, 5, EnvelopeKind::Random, 3600).unwrap();
        assert_eq!(created.status, Status::Ok, "round {round}");
        let envelope = created.body.unwrap().envelope;
        assert_eq!(client.grab(envelope, 100 + round).unwrap().status, Status::Ok, "round {round}");
        assert_eq!(client.open(envelope, 100 + round).unwrap().status, Status::Ok, "round {round}");
    }
    // Snapshots were taken, so their log lines were written (and dropped).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !snapshot_exists(&data_dir) {
        assert!(Instant::now() < deadline, "no snapshot in {}", data_dir.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(client.ping().unwrap(), Status::Ok, "still serving after its log lines");
    drop(client);

    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
    // Its "stopped" line went to the closed pipe too.
    assert!(exit.success(), "the server did not stop cleanly: {exit:?}");
}

#[test]
fn a_log_pipe_nobody_reads_does_not_stop_the_shards() {
    let (port, data_dir, mut child) = spawn_server("unread");
    let stderr = child.stderr.take().unwrap();
    // The smallest pipe the kernel allows (one page), so a few dozen lines
    // fill it: from then on every write to it blocks until it is read.
    #[allow(unsafe_code)] // reason: fcntl has no safe wrapper here
    // SAFETY: a plain fcntl on a pipe this test owns.
    let size = unsafe { libc::fcntl(stderr.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(size > 0, "F_SETPIPE_SZ: {}", std::io::Error::last_os_error());
    let mut lines = BufReader::new(stderr).lines();
    let ready = lines.by_ref().map_while(Result::ok).any(|line| line.contains("ready:"));
    assert!(ready, "no ready line: {:?}", child.wait());
    // Nobody reads from here on. Each round's three records bring a snapshot
    // and its log line; every request must still be answered in time.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = Client::connect(addr).unwrap();
    let capacity_lines = size as usize / 64;
    for round in 0..4 * capacity_lines as u64 {
        let created = client.create(1, 500, 5, EnvelopeKind::Random, 3600).unwrap();
        assert_eq!(created.status, Status::Ok, "round {round}");
        let envelope = created.body.unwrap().envelope;
        assert_eq!(client.grab(envelope, 100 + round).unwrap().status, Status::Ok, "round {round}");
        assert_eq!(client.open(envelope, 100 + round).unwrap().status, Status::Ok, "round {round}");
    }
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    // Now read: more lines than the pipe holds were written while it was full
    // (so the shard served while its log was blocked), and the last one is
    // the "stopped" the server flushed before it exited.
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
    assert!(exit.success(), "the server did not stop cleanly: {exit:?}");
    let written: usize = rest.iter().map(|l| l.len() + 1).sum();
    assert!(written > size as usize, "only {written} bytes of log for a {size}-byte pipe: {rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some("hongbao-server: stopped"), "{rest:?}");
}

/// A one-shard server with its stderr piped to the test, on a free port and
/// a fresh data directory. A snapshot every 8 log records: each writes a log
/// line while the server serves.
fn spawn_server(name: &str) -> (u16, std::path::PathBuf, std::process::Child) {
    let port = free_port();
    let data_dir = std::env::temp_dir().join(format!("hongbao-log-{name}-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let child = Command::new(env!("CARGO_BIN_EXE_hongbao-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--shards", "1", "--snapshot-every", "8"])
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hongbao-server");
    (port, data_dir, child)
}

fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 65_000 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            break port;
        }
    }
}

fn snapshot_exists(dir: &std::path::Path) -> bool {
    walk(dir).iter().any(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("snapshot-") && n.ends_with(".snap"))
    })
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
