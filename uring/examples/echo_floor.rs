//! The machine's floor for hongbao's traffic through the socket ring: an echo
//! server (a 48-byte answer per 40-byte request, no other work) on one core
//! and a closed-loop client on the other, both on glommio executors with one
//! [`Ring`] each. Whatever a real server reaches with the same connections
//! and depth, it cannot beat this.
//!
//! ```text
//! cargo run --release -p hongbao-uring --example echo_floor -- [CONNECTIONS] [DEPTH] [SECONDS]
//! ```
//! (defaults 64 1 5: the not-pipelined benchmark's shape). The server runs on
//! CPU 0, the client on CPU 1.

use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use hongbao_uring::{socket, Completion, Doorbell, Ring, RingConfig};

const REQUEST: usize = 40;
const ANSWER: usize = 48;
/// How long the server spins without a completion before it parks.
const SPIN: Duration = Duration::from_micros(200);

struct Conn {
    fd: OwnedFd,
    partial: usize,
    out: Vec<u8>,
    spare: Option<Vec<u8>>,
}

impl Conn {
    fn new(fd: OwnedFd) -> Conn {
        Conn { fd, partial: 0, out: Vec::new(), spare: Some(Vec::new()) }
    }

    /// Counts whole messages of `size` in `n` more bytes.
    fn take(&mut self, n: usize, size: usize) -> usize {
        self.partial += n;
        let whole = self.partial / size;
        self.partial %= size;
        whole
    }

    fn flush(&mut self, ring: &mut Ring, token: u64) {
        if !self.out.is_empty() {
            if let Some(mut next) = self.spare.take() {
                std::mem::swap(&mut next, &mut self.out);
                ring.send(self.fd.as_raw_fd(), token, next, 0);
            }
        }
    }
}

/// One loop of either side; returns the messages it counted.
fn turn(
    ring: &mut Ring,
    conns: &mut [Conn],
    inbound: usize,
    outbound: usize,
    dirty: &mut Vec<usize>,
) -> usize {
    let mut counted = 0;
    ring.poll(|c| match c {
        Completion::Received { token, data, armed } => {
            assert!(armed, "the echo floor's pool never runs dry");
            let conn = &mut conns[token as usize];
            let whole = conn.take(data.len(), inbound);
            conn.out.resize(conn.out.len() + whole * outbound, 0);
            counted += whole;
            dirty.push(token as usize);
        }
        Completion::Sent { token, mut buffer, result, .. } => {
            let conn = &mut conns[token as usize];
            assert_eq!(result.expect("send"), buffer.len(), "MSG_WAITALL sends whole buffers");
            buffer.clear();
            conn.spare = Some(buffer);
            dirty.push(token as usize);
        }
        Completion::ReceiveEnded { .. } => {}
        other => panic!("unexpected {other:?}"),
    })
    .expect("poll");
    for token in dirty.drain(..) {
        conns[token].flush(ring, token as u64);
    }
    counted
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let connections = args.first().copied().unwrap_or(64);
    let depth = args.get(1).copied().unwrap_or(1);
    let seconds = args.get(2).copied().unwrap_or(5) as u64;
    let listener = socket::listen("127.0.0.1:0".parse().unwrap()).expect("listen");
    let addr = socket::local_addr(&listener).expect("address");
    let run_for = Duration::from_secs(seconds);

    let server = LocalExecutorBuilder::new(Placement::Fixed(0))
        .spawn(move || async move {
            let mut ring = Ring::new(RingConfig::default()).expect("ring");
            let doorbell = Rc::new(Doorbell::default());
            ring.spawn_wakeup(doorbell.clone()).expect("wakeup");
            let mut conns = Vec::new();
            while conns.len() < connections {
                let (stream, _) =
                    std::net::TcpListener::from(listener.try_clone().unwrap()).accept().unwrap();
                stream.set_nodelay(true).unwrap();
                let fd = OwnedFd::from(stream);
                ring.receive(fd.as_raw_fd(), conns.len() as u64);
                conns.push(Conn::new(fd));
            }
            let mut dirty = Vec::new();
            let (mut busy_at, mut parks) = (Instant::now(), 0u64);
            let stop = Instant::now() + run_for + Duration::from_secs(1);
            while Instant::now() < stop {
                if turn(&mut ring, &mut conns, REQUEST, ANSWER, &mut dirty) > 0 {
                    busy_at = Instant::now();
                }
                if busy_at.elapsed() >= SPIN && ring.prepare_park().expect("park") {
                    parks += 1;
                    let timeout = glommio::timer::sleep(Duration::from_millis(100));
                    futures_lite::future::or(doorbell.wait(), timeout).await;
                    ring.unpark();
                    busy_at = Instant::now();
                } else {
                    futures_lite::future::yield_now().await;
                }
            }
            parks
        })
        .expect("server executor");

    let client = LocalExecutorBuilder::new(Placement::Fixed(1))
        .spawn(move || async move {
            let mut ring = Ring::new(RingConfig::default()).expect("ring");
            let mut conns: Vec<Conn> = (0..connections)
                .map(|i| {
                    let stream = std::net::TcpStream::connect(addr).unwrap();
                    stream.set_nodelay(true).unwrap();
                    let fd = OwnedFd::from(stream);
                    ring.receive(fd.as_raw_fd(), i as u64);
                    let mut conn = Conn::new(fd);
                    conn.out.resize(depth * REQUEST, 0);
                    conn
                })
                .collect();
            let mut dirty: Vec<usize> = (0..connections).collect();
            let start = Instant::now();
            let mut answered = 0;
            while start.elapsed() < run_for {
                answered += turn(&mut ring, &mut conns, ANSWER, REQUEST, &mut dirty);
                futures_lite::future::yield_now().await;
            }
            (answered, start.elapsed())
        })
        .expect("client executor");

    let (answered, elapsed) = client.join().expect("client");
    let parks = server.join().expect("server");
    println!(
        "echo floor, {connections} connections x {depth} deep: {:.0} round trips/s ({answered} in {:.2} s; server parked {parks} times)",
        answered as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}
