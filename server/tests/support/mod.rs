//! Starting a real `hongbao-server` process for end-to-end tests: free ports,
//! wait for the ready line, stop it when the test ends.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// A server process; killed when dropped.
pub struct TestServer {
    pub child: Child,
    pub main: SocketAddr,
    pub shard_ports: Vec<u16>,
    pub log: mpsc::Receiver<String>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `shards + 1` consecutive ports that are free right now.
fn free_port_run(shards: u16) -> u16 {
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let seed = std::process::id().wrapping_mul(2_654_435_761).wrapping_add(n.wrapping_mul(97));
        let base = 20_000 + (seed % 40_000) as u16;
        let all_free = (0..=shards)
            .all(|i| base.checked_add(i).is_some_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()));
        if all_free {
            return base;
        }
    }
}

impl TestServer {
    /// Starts a server with `shards` shards and extra flags.
    pub fn start(shards: u16, extra: &[&str]) -> TestServer {
        for _ in 0..10 {
            let base = free_port_run(shards);
            if let Some(server) = TestServer::try_start(base, shards, extra) {
                return server;
            }
        }
        panic!("could not start hongbao-server on any port");
    }

    fn try_start(base: u16, shards: u16, extra: &[&str]) -> Option<TestServer> {
        let main: SocketAddr = format!("127.0.0.1:{base}").parse().unwrap();
        let data_dir = std::env::temp_dir().join(format!("hongbao-test-{}-{base}", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_hongbao-server"))
            .arg("--listen")
            .arg(main.to_string())
            .arg("--shards")
            .arg(shards.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hongbao-server");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains("ready:") => break,
                Ok(line) if line.contains("cannot listen") => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("hongbao-server did not become ready: {status:?}");
                }
            }
        }
        let shard_ports = (0..shards).map(|i| base + 1 + i).collect();
        Some(TestServer { child, main, shard_ports, log: rx })
    }

    /// The address of shard `i`'s shard-aware port.
    pub fn shard_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.main.ip(), self.shard_ports[i])
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        std::mem::forget(self);
        exit
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a workspace binary next to the server's, building it if needed.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_hongbao-server")).with_file_name(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--bins", "-p", "hongbao-client"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building {name} failed");
    }
    assert!(path.exists(), "{} not found", path.display());
    path
}
