//! Starting a real `hongbao-server` process for end-to-end tests: free ports,
//! wait for the ready line, stop it when the test ends.

#![allow(dead_code)]

pub mod prometheus;

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
    pub data_dir: PathBuf,
    /// Flags it was started with, to start it again on the same data.
    pub args: Vec<String>,
    pub shards: u16,
    /// Remove the data directory when dropped.
    pub owns_data: bool,
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
        TestServer::start_prepared(shards, extra, &|_| {})
    }

    /// Starts a server on free ports with an existing data directory, which
    /// it does not remove.
    pub fn start_with_data(shards: u16, extra: &[&str], data_dir: PathBuf) -> TestServer {
        for _ in 0..10 {
            let base = free_port_run(shards);
            if let Some(mut server) = TestServer::launch(base, shards, extra, data_dir.clone()) {
                server.owns_data = false;
                return server;
            }
        }
        panic!("could not start hongbao-server on any port");
    }

    /// Starts a server with `shards` shards, its command first passed to
    /// `prepare` (to change what the process inherits, say).
    pub fn start_prepared(shards: u16, extra: &[&str], prepare: &dyn Fn(&mut Command)) -> TestServer {
        for _ in 0..10 {
            let base = free_port_run(shards);
            let data_dir = std::env::temp_dir().join(format!("hongbao-test-{}-{base}", std::process::id()));
            let _ = std::fs::remove_dir_all(&data_dir);
            if let Some(server) = TestServer::launch_prepared(base, shards, extra, data_dir, prepare) {
                return server;
            }
        }
        panic!("could not start hongbao-server on any port");
    }

    /// Starts a server on `base` with `data_dir` (kept as it is).
    pub fn launch(base: u16, shards: u16, extra: &[&str], data_dir: PathBuf) -> Option<TestServer> {
        TestServer::launch_prepared(base, shards, extra, data_dir, &|_| {})
    }

    fn launch_prepared(
        base: u16,
        shards: u16,
        extra: &[&str],
        data_dir: PathBuf,
        prepare: &dyn Fn(&mut Command),
    ) -> Option<TestServer> {
        let main: SocketAddr = format!("127.0.0.1:{base}").parse().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_hongbao-server"));
        prepare(&mut command);
        let mut child = command
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
                Ok(line) if line.contains("cannot recover") => panic!("{line}"),
                Ok(line) if line.contains("cannot listen") => {
                    eprintln!("test server: {line}");
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
        let args = extra.iter().map(|a| a.to_string()).collect();
        Some(TestServer { child, main, shard_ports, log: rx, data_dir, args, shards, owns_data: true })
    }

    /// Kills the server with SIGKILL and starts it again on the same ports and
    /// data, as after a crash.
    pub fn crash_and_restart(mut self) -> TestServer {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.owns_data = false;
        let extra: Vec<&str> = self.args.iter().map(String::as_str).collect();
        for _ in 0..50 {
            if let Some(server) =
                TestServer::launch(self.main.port(), self.shards, &extra, self.data_dir.clone())
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server did not come back after a crash");
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
        let _ = std::fs::remove_dir_all(&self.data_dir);
        std::mem::forget(self);
        exit
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
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
