//! Whether another process listens on the ports the server is about to bind.
//!
//! The shards bind with SO_REUSEPORT, so the kernel would quietly share a port
//! with another hongbao (and its clients would land on either); a connect
//! tells first. Binding alone cannot: the sockets of connections a killed
//! server left behind hold the port without listening on it, and must not
//! stop a restart.
//!
//! A server just killed can still seem to listen for a moment: its io_uring
//! instances are torn down by the kernel after the process is gone, and a
//! listening socket an armed accept refers to stays open, and takes connects
//! into its backlog, until then. Restarting right after a crash (a supervisor
//! does) would be refused. So a port that answers is probed again, for up to
//! [`PORT_PATIENCE`], and refused only if it still answers then.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a port that answers a connect is given to stop answering before
/// it is taken as another live server's: well past the moment a dead
/// server's rings take to go (the crash soak saw under 100 ms), short
/// enough not to hold an operator's mistake for long.
pub const PORT_PATIENCE: Duration = Duration::from_secs(2);
/// Time between two probes of a port that answered.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How long one connect may take: a probe of the host's own address is
/// answered or refused at once; this only bounds a filtered one.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// The first of `ports` on `ip` (the loopback address if unspecified) where
/// something still listens after `patience`, if any does.
pub fn first_taken(ip: IpAddr, ports: &[u16], patience: Duration) -> Option<SocketAddr> {
    let ip = if ip.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { ip };
    let deadline = Instant::now() + patience;
    ports.iter().map(|port| SocketAddr::new(ip, *port)).find(|addr| still_listening(*addr, deadline))
}

/// Whether `addr` takes connects until `deadline` (a listener that goes
/// away before it does not count). A connect that times out counts as
/// taken: on the host's own address that is a listener whose accept queue
/// is full (a live server under load) or a port filtered on purpose.
/// Other errors (an address not on this host) leave the answer to bind.
fn still_listening(addr: SocketAddr, deadline: Instant) -> bool {
    loop {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return false,
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep(PROBE_EVERY.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn a_port_that_stays_taken_is_named() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = listener.local_addr().unwrap();
        let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let found =
            first_taken(IpAddr::V4(Ipv4Addr::UNSPECIFIED), &[free, taken.port()], Duration::from_millis(100));
        assert_eq!(found, Some(taken));
        drop(listener);
    }

    #[test]
    fn a_listener_that_goes_away_within_the_patience_does_not_hold_the_start() {
        // As a killed server's listener does while the kernel tears down its rings.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(listener);
        });
        assert_eq!(first_taken(IpAddr::V4(Ipv4Addr::LOCALHOST), &[port], Duration::from_secs(30)), None);
        closer.join().unwrap();
    }

    #[test]
    fn free_ports_pass_at_once() {
        let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert_eq!(first_taken(IpAddr::V4(Ipv4Addr::LOCALHOST), &[free], Duration::ZERO), None);
    }
}
