//! Stopping: the first SIGTERM drains the connections and stops cleanly
//! (status 0); a second one during the drain exits at once, with status 1,
//! for a stop that hangs. Nothing acknowledged depends on the drain: an
//! answer goes out only once its change is durable.

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
