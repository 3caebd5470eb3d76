//! A server whose log reader went away keeps serving and stops cleanly: a
//! log line written to a closed pipe is dropped, not a panic (which the
//! release build turns into an abort of every shard).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hongbao_client::Client;
use hongbao_protocol::body::EnvelopeKind;
use hongbao_protocol::Status;

#[test]
fn a_closed_log_pipe_neither_stops_nor_crashes_the_server() {
    let port = loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 65_000 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            break port;
        }
    };
    let data_dir = std::env::temp_dir().join(format!("hongbao-log-pipe-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hongbao-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--shards", "1"])
        // A snapshot every 8 log records: each one writes a log line while
        // the server serves, after the reader is gone.
        .args(["--snapshot-every", "8"])
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hongbao-server");
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
