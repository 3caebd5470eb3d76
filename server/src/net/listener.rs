//! The shard's listening sockets and the connection limits judged at accept:
//! in total, and per source address (so one client cannot take every slot).
//! A connection over a limit is told `busy` and closed; every other goes on.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use hongbao_protocol::codec::write_response;
use hongbao_protocol::Status;

use crate::shard::Shard;

/// A listening socket whose accepts come through the shard's ring.
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    pub fd: OwnedFd,
    /// Its multishot accept is armed.
    pub armed: bool,
    /// After a failed accept (out of file descriptors, say), when to try again.
    pub retry_at: Option<Instant>,
    /// Failed accepts, counted for the log (see [`Listener::accept_failed`]).
    failures: AcceptFailures,
}

/// Failed accepts not yet told in the log, and when the log last told.
#[derive(Debug, Default)]
struct AcceptFailures {
    untold: u64,
    told_at: Option<Instant>,
}

/// Least time between two log lines about failed accepts: a host out of
/// file descriptors fails every retry, 100 a second per listener, and a log
/// line each would flood the log and hold the shard on its writes.
pub const ACCEPT_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

impl Listener {
    /// Binds `addr` with `SO_REUSEPORT` (every shard binds the main port).
    pub fn bind(addr: SocketAddr) -> std::io::Result<Listener> {
        Ok(Listener {
            fd: hongbao_uring::socket::listen(addr)?,
            armed: false,
            retry_at: None,
            failures: AcceptFailures::default(),
        })
    }

    /// Counts a failed accept at `now`; returns the log line to write, if
    /// one is due: the first failure, then one line per
    /// [`ACCEPT_FAILURE_LOG_EVERY`] with how many failed since the last.
    pub fn accept_failed(&mut self, now: Instant, error: &std::io::Error) -> Option<String> {
        let failures = &mut self.failures;
        failures.untold += 1;
        if failures.told_at.is_some_and(|at| now.duration_since(at) < ACCEPT_FAILURE_LOG_EVERY) {
            return None;
        }
        let line = match failures.untold {
            1 => format!("accept failed: {error}"),
            n => format!("accept failed {n} times since the last line: {error}"),
        };
        failures.untold = 0;
        failures.told_at = Some(now);
        Some(line)
    }
}

/// Why a new connection is turned away, if it is.
pub fn over_limit(shard: &Shard, source: Option<IpAddr>) -> bool {
    let over_total = shard.counters.connections.get() as usize >= shard.max_connections;
    let over_source = source.is_some_and(|ip| shard.connections_from(ip) >= shard.max_connections_per_ip);
    over_total || over_source
}

/// Tells a connection over a limit `busy` (request id 0) and closes it. The
/// 24 bytes fit any new socket's send buffer, so a non-blocking send does not
/// wait; if it fails the peer just sees the close. What the client already
/// sent (a first request right behind the connect) is read and dropped
/// first, up to [`REFUSE_DRAIN_BYTES`]: closing with unread input would reset
/// the connection and could throw the answer away.
pub fn refuse(fd: OwnedFd) {
    let mut answer = Vec::with_capacity(hongbao_protocol::HEADER_LEN);
    write_response(&mut answer, 0, 0, Status::Busy, &[]);
    let mut stream = std::net::TcpStream::from(fd);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let _ = std::io::Write::write_all(&mut stream, &answer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut scratch = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSE_DRAIN_BYTES {
        match std::io::Read::read(&mut stream, &mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Most bytes read and dropped from a refused connection before it closes.
pub const REFUSE_DRAIN_BYTES: usize = 64 * 1024;

/// The source a connection counts against for `--max-connections-per-ip`:
/// an IPv4 address (also when it comes mapped into IPv6), or an IPv6
/// address's /64, the block one host or one subscriber is usually handed,
/// so that a client cannot take a fresh address from its block for every
/// thousand connections.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Counts a connection against its source address.
pub fn count_source(shard: &Shard, ip: IpAddr) {
    *shard.per_source.borrow_mut().entry(ip).or_insert(0) += 1;
}

/// Stops counting a closed connection against its source address.
pub fn release_source(shard: &Shard, ip: IpAddr) {
    let mut per_source = shard.per_source.borrow_mut();
    if let Some(count) = per_source.get_mut(&ip) {
        *count -= 1;
        if *count == 0 {
            per_source.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_accepts_are_told_once_then_counted_per_interval() {
        let mut listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let error = std::io::Error::from_raw_os_error(libc::EMFILE);
        let t0 = Instant::now();
        let first = listener.accept_failed(t0, &error).expect("the first failure is told");
        assert!(first.starts_with("accept failed: "), "{first}");
        // A retry every 10 ms for just under the interval: counted, not told.
        let mut at = t0;
        for _ in 0..999 {
            at += Duration::from_millis(10);
            assert_eq!(listener.accept_failed(at, &error), None);
        }
        let next = listener.accept_failed(t0 + ACCEPT_FAILURE_LOG_EVERY, &error).expect("told again");
        assert!(next.starts_with("accept failed 1000 times since the last line: "), "{next}");
        assert_eq!(listener.accept_failed(t0 + ACCEPT_FAILURE_LOG_EVERY, &error), None);
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_blocks_of_64() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(source_of(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"), "IPv4 mapped into IPv6");
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("2001:db8:1:2::1")), source_of(ip("2001:db8:1:2:ffff::9")), "one /64");
        assert_ne!(source_of(ip("2001:db8:1:2::1")), source_of(ip("2001:db8:1:3::1")));
        assert_eq!(source_of(ip("::1")), ip("::"), "loopback's /64");
    }
}
