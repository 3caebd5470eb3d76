//! Idle connections are never timed out, so the server asks the kernel to
//! probe them: a client that vanished without a FIN or RST (a host lost, a
//! NAT entry expired) does not hold its connection, slot and buffers forever.
//! Seen from outside in `/proc/net/tcp`, where a socket whose keepalive timer
//! runs shows timer kind 2.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use hongbao_protocol::Request;
use support::TestServer;

/// The timer kind (`tr`) of the TCP socket from `local` to `remote`, from
/// `/proc/net/tcp` (IPv4 loopback: addresses in hex, little-endian words).
fn timer_kind(local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port()),
        SocketAddr::V6(_) => unreachable!("the test server listens on IPv4 loopback"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields[1] == local && fields[2] == remote)
            .then(|| fields[5].split(':').next().unwrap().parse().unwrap())
    })
}

#[test]
fn the_server_side_of_an_idle_connection_runs_a_keepalive_timer() {
    let server = TestServer::start(1, &[]);
    let mut client = TcpStream::connect(server.main).unwrap();
    let mut ping = Vec::new();
    Request::Ping.encode(1, &mut ping);
    client.write_all(&ping).unwrap();
    let mut answer = [0u8; 24];
    client.read_exact(&mut answer).unwrap(); // Admitted and served.
    let mine = client.local_addr().unwrap();
    // The server's end: from its port to ours. Until our (maybe delayed)
    // ACK of the answer arrives, its timer is the retransmit timer (kind 1).
    let mut theirs = None;
    for _ in 0..500 {
        theirs = timer_kind(server.main, mine);
        if theirs == Some(2) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(theirs, Some(2), "keepalive timer on the server's socket");
    // The client's end asks for none: the timer is the server's doing.
    assert_eq!(timer_kind(mine, server.main), Some(0), "no timer on the client's socket");
}
