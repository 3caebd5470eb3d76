//! The few socket calls the ring's users make outside the ring: listening
//! with `SO_REUSEPORT` (every shard binds the main port), `TCP_NODELAY`, and
//! the peer's address for per-source limits.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Connections the kernel queues for a listener before they are accepted.
pub const LISTEN_BACKLOG: i32 = 4096;

/// A listening TCP socket on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`,
/// blocking (the ring waits for it; a non-blocking socket would make ring
/// operations fail with `EAGAIN` instead).
pub fn listen(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain system call; the result is checked and owned at once.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    let (storage, len) = to_sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    if unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain system call on our socket.
    if unsafe { libc::listen(fd, LISTEN_BACKLOG) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Turns Nagle's algorithm off: answers are written in whole batches already.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Turns TCP keepalive on for `fd`: after `idle` seconds without traffic the
/// kernel probes every `interval` seconds and resets the connection after
/// `probes` unanswered probes, so a peer that vanished without a FIN or RST
/// (a host lost, a NAT entry expired) does not hold its connection forever.
pub fn set_keepalive(fd: RawFd, idle: u32, interval: u32, probes: u32) -> io::Result<()> {
    let int = |v: u32| v.min(i32::MAX as u32) as libc::c_int;
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, int(idle))?;
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, int(interval))?;
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, int(probes))?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)
}

/// Resets connection `fd` when data it sent stays unacknowledged for
/// `millis`: keepalive probes only an idle connection, and without this a
/// request written to a host that vanished waits on the kernel's
/// retransmissions (`tcp_retries2`, about 15 minutes). With keepalive on,
/// it also bounds how long unanswered probes go on.
pub fn set_user_timeout(fd: RawFd, millis: u32) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, millis.min(i32::MAX as u32) as libc::c_int)
}

/// The `TCP_USER_TIMEOUT` of `fd`, ms (0: the kernel's default).
pub fn user_timeout(fd: RawFd) -> io::Result<u32> {
    get_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT).map(|v| v.max(0) as u32)
}

/// The keepalive settings of `fd` as (idle, interval, probes) seconds and
/// count, or `None` when SO_KEEPALIVE is off.
pub fn keepalive(fd: RawFd) -> io::Result<Option<(u32, u32, u32)>> {
    if get_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE)? == 0 {
        return Ok(None);
    }
    let get = |name| get_int(fd, libc::IPPROTO_TCP, name).map(|v| v.max(0) as u32);
    Ok(Some((get(libc::TCP_KEEPIDLE)?, get(libc::TCP_KEEPINTVL)?, get(libc::TCP_KEEPCNT)?)))
}

/// Fixes the kernel's receive buffer of `fd` at `bytes` (the kernel doubles
/// it for its bookkeeping), turning autotuning off: what a peer can have
/// queued for us is then bounded, whatever the host's `tcp_rmem`.
pub fn set_receive_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes.min(i32::MAX as usize) as libc::c_int)
}

/// The address at the other end of connected socket `fd`.
pub fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    address_of(fd, libc::getpeername)
}

/// The address socket `fd` is bound to.
pub fn local_addr(fd: &impl AsRawFd) -> io::Result<SocketAddr> {
    address_of(fd.as_raw_fd(), libc::getsockname)
}

/// Shuts both directions of `fd` down, so a peer blocked on it sees the end.
pub fn shutdown(fd: RawFd) {
    // SAFETY: plain system call; failure (already shut, not connected) is fine.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Shuts the write direction of `fd` down: the peer reads the end of the
/// stream after what was sent, and may still answer.
pub fn shutdown_write(fd: RawFd) {
    // SAFETY: plain system call; failure (the peer already closed) shows as
    // the end of the peer's answers.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

type NameCall = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn address_of(fd: RawFd, call: NameCall) -> io::Result<SocketAddr> {
    // SAFETY: zeroed sockaddr_storage is a valid (unspecified) address.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` has room for any address; the kernel writes `len`.
    if unsafe { call(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    from_sockaddr(&storage)
}

fn get_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid out-parameters of an int's length.
    let done =
        unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut libc::c_int).cast(), &mut len) };
    if done < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a valid int for the option's length.
    let done = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: zeroed sockaddr_storage is valid; the right variant is written below.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::new(IpAddr::V6(ip), u16::from_be(sin6.sin6_port)))
        }
        family => Err(io::Error::new(io::ErrorKind::Unsupported, format!("address family {family}"))),
    }
}
