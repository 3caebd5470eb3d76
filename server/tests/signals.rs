//! Stopping: the first SIGTERM drains the connections and stops cleanly
//! (status 0); a second one during the drain exits at once, with status 1,
//! for a stop that hangs. Nothing acknowledged depends on the drain: an
//! answer goes out only once its change is durable. SIGHUP stops it the
//! same way, unless it was ignored when the server started (`nohup`).

mod support;

use std::io::Read;
use std::net::TcpStream;

use support::TestServer;

/// Sends `signal` at once (no `kill` process to start: the second signal
/// must land inside the drain, which lasts about a second).
#[allow(unsafe_code)] // one libc call, on a pid this test owns
fn signal(server: &TestServer, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(server.child.id()).unwrap();
    // SAFETY: kill only sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[test]
fn a_second_sigterm_during_the_drain_exits_at_once() {
    let mut server = TestServer::start(1, &[]);
    // A client that never closes keeps the drain waiting (up to its bound).
    let mut held = TcpStream::connect(server.main).unwrap();
    signal(&server, libc::SIGTERM);
    // The drain began once the server shut its side of the held connection:
    // the first signal has been handled, so the second one is a second.
    let mut buf = [0u8; 64];
    while held.read(&mut buf).is_ok_and(|n| n > 0) {}
    signal(&server, libc::SIGTERM);
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "the second SIGTERM exits at once: {status:?}");
}

#[test]
fn one_sigterm_stops_cleanly() {
    let server = TestServer::start(1, &[]);
    let held = TcpStream::connect(server.main).unwrap();
    let status = server.terminate();
    drop(held);
    assert!(status.success(), "{status:?}");
}

#[test]
fn sighup_drains_and_stops_cleanly() {
    use std::os::unix::process::CommandExt as _;
    // SIGHUP at its default in the server, whatever this test inherited
    // (run under nohup, the test and its children ignore it, and a server
    // that finds it ignored at start keeps ignoring it, as it should).
    #[allow(unsafe_code)] // reason: resetting a disposition in the child before exec
    let mut server = TestServer::start_prepared(1, &[], &|command| {
        // SAFETY: signal(2) is async-signal-safe, so it may run between fork
        // and exec; it touches nothing of the parent's.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                Ok(())
            });
        }
    });
    let mut held = TcpStream::connect(server.main).unwrap();
    signal(&server, libc::SIGHUP);
    // Drained, not killed: the server shuts the held connection itself.
    let mut buf = [0u8; 64];
    while held.read(&mut buf).is_ok_and(|n| n > 0) {}
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGHUP stops with a drain: {status:?}");
}

#[test]
fn sighup_ignored_at_start_stays_ignored() {
    use std::os::unix::process::CommandExt as _;
    #[allow(unsafe_code)] // reason: what nohup does, in the child before exec
    let mut server = TestServer::start_prepared(1, &[], &|command| {
        // SAFETY: signal(2) is async-signal-safe, so it may run between fork
        // and exec; it touches nothing of the parent's.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                Ok(())
            });
        }
    });
    signal(&server, libc::SIGHUP);
    // Still serving: a PING after the signal is answered.
    let mut client = hongbao_client::Client::connect(server.main).unwrap();
    for _ in 0..20 {
        client.ping().expect("still serving after an ignored SIGHUP");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(server.child.try_wait().unwrap().is_none(), "the server is still running");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}
