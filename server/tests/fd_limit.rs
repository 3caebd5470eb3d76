//! A host whose open-files limit leaves room for fewer connections than
//! `--max-connections`: the server admits only as many as fit and tells the
//! rest `busy`, so connections never take the descriptors its log needs (a
//! segment or snapshot it cannot open fails the log, and the shard then
//! refuses every change until restarted).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hongbao_client::Client;
use hongbao_protocol::body::EnvelopeKind;
use hongbao_protocol::{Request, Status};
use support::TestServer;

/// Connections the test's open-files limit leaves room for.
const ROOM: u64 = 8;
/// That limit, soft and hard: the 64 a shard keeps for itself
/// (`FDS_PER_SHARD`) and room for [`ROOM`] connections.
const NOFILE: u64 = 64 + ROOM;

/// The status of the answer to a PING on a new connection, or `None` if the
/// connection ended without one.
fn ping_status(server: &TestServer) -> Option<u16> {
    let mut stream = TcpStream::connect(server.main).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut ping = Vec::new();
    Request::Ping.encode(1, &mut ping);
    let _ = stream.write_all(&ping);
    let mut answer = [0u8; 24];
    stream.read_exact(&mut answer).ok()?;
    Some(u16::from_le_bytes([answer[6], answer[7]]))
}

#[test]
fn connections_past_what_the_open_files_limit_allows_are_told_busy() {
    use std::os::unix::process::CommandExt as _;
    // A snapshot every 8 records: the log opens new files while the
    // connections are at their cap.
    #[allow(unsafe_code)] // reason: what `ulimit -n` does, in the child before exec
    let server = TestServer::start_prepared(1, &["--snapshot-every", "8"], &|command| {
        // SAFETY: setrlimit is async-signal-safe, so it may run between fork
        // and exec; it touches nothing of the parent's.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit { rlim_cur: NOFILE, rlim_max: NOFILE };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    });
    let mut clients: Vec<Client> = (0..ROOM).map(|_| Client::connect(server.main).unwrap()).collect();
    for client in &mut clients {
        assert_eq!(client.ping().unwrap(), Status::Ok, "within the room the limit leaves");
    }
    // Past it, every new connection is told busy, however many come (more
    // than the limit has descriptors for).
    for attempt in 0..2 * NOFILE {
        assert_eq!(ping_status(&server), Some(Status::Busy as u16), "attempt {attempt} past the cap");
    }
    // And the log still opens what it needs: changes go on, with snapshots.
    let client = &mut clients[0];
    for round in 0..20u64 {
        let created = client.create(1, 300, 3, EnvelopeKind::Random, 3600).unwrap();
        assert_eq!(created.status, Status::Ok, "round {round}");
        let envelope = created.body.unwrap().envelope;
        assert_eq!(client.grab(envelope, 7).unwrap().status, Status::Ok, "round {round}");
        assert_eq!(client.open(envelope, 7).unwrap().status, Status::Ok, "round {round}");
    }
    drop(clients);
    assert!(server.terminate().success());
}
