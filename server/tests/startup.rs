//! Start-up checks against the host: a limit too low to run stops the server
//! with a message that names the fix; one it can run with is a warning.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn server_under_ulimit(nofile: u32, port: u16) -> std::process::Child {
    let script = format!(
        "ulimit -n {nofile} && exec {} --shards 2 --listen 127.0.0.1:{port} --durability none",
        env!("CARGO_BIN_EXE_hongbao-server")
    );
    Command::new("bash").args(["-c", &script]).stderr(Stdio::piped()).spawn().expect("run bash")
}

fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 65_000 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

#[test]
fn an_open_files_limit_too_low_to_run_stops_with_the_fix() {
    let child = server_under_ulimit(100, free_port());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("open-files limit is 100"), "{stderr}");
    assert!(stderr.contains("ulimit -n"), "the message names the fix: {stderr}");
}

#[test]
fn a_limit_it_can_run_with_is_a_warning() {
    let mut child = server_under_ulimit(4_000, free_port());
    let stderr = child.stderr.take().unwrap();
    let mut warned = false;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("warning") && line.contains("connections per shard") {
            warned = true;
        }
        if line.contains("ready:") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "no warning about the open-files limit");
}

#[test]
fn a_port_another_process_listens_on_stops_the_start() {
    // SO_REUSEPORT would let the kernel share it; the probe refuses it once
    // it has outlasted the patience a just-killed server's port is given.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    // Accepted and dropped, as a live server would, so 2 s of probes never
    // fill the backlog (whose full queue would look otherwise).
    let acceptor = other.try_clone().unwrap();
    std::thread::spawn(move || acceptor.incoming().for_each(drop));
    let output = Command::new(env!("CARGO_BIN_EXE_hongbao-server"))
        .args(["--shards", "1", "--listen", &format!("127.0.0.1:{port}"), "--durability", "none"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}: another process listens there")),
        "{stderr}"
    );
    drop(other);
}
