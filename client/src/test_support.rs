//! A fake server for the unit tests: a std listener on 127.0.0.1:0 whose one
//! connection is served in a thread by a script the test writes. It decodes
//! requests with the protocol crate and answers canned frames, so the tests
//! exercise the client against real sockets without the real server.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use hongbao_protocol::body::{
    ClaimEntry, CreateResponse, GrabResponse, HelloResponse, OpenResponse, QueryResponse, StatsResponse,
};
use hongbao_protocol::codec::write_response;
use hongbao_protocol::{decode_frame, Opcode, Request, Status};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromZeros, IntoBytes};

/// Bounds every test socket read, so a broken test fails instead of hanging.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of one test connection.
#[derive(Debug)]
pub(crate) struct FakeConn {
    stream: TcpStream,
    rbuf: Vec<u8>,
}

impl FakeConn {
    /// The next request and its id, or `None` when the client hung up.
    /// HELLO tokens must be empty, which lets the request be `'static`.
    pub(crate) fn recv(&mut self) -> Option<(u64, Request<'static>)> {
        loop {
            if let Some(frame) = decode_frame(&self.rbuf).expect("client sent a valid frame") {
                let id = frame.request_id();
                let len = frame.wire_len();
                let request = match Request::decode(&frame).expect("client sent a valid request") {
                    Request::Hello { hello, token } => {
                        assert!(token.is_empty(), "tests use no token");
                        Request::Hello { hello, token: &[] }
                    }
                    Request::Ping => Request::Ping,
                    Request::Create(b) => Request::Create(b),
                    Request::Grab(b) => Request::Grab(b),
                    Request::Open(b) => Request::Open(b),
                    Request::Query(b) => Request::Query(b),
                    Request::Stats => Request::Stats,
                };
                self.rbuf.drain(..len);
                return Some((id, request));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("fake server read: {e}"),
            }
        }
    }

    /// Writes raw bytes to the client.
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("fake server write");
    }
}

/// Serves one connection with `script` in a thread; returns the address to
/// connect to and the thread, whose result the test joins.
pub(crate) fn spawn<T, F>(script: F) -> (SocketAddr, JoinHandle<T>)
where
    T: Send + 'static,
    F: FnOnce(FakeConn) -> T + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake server");
    let addr = listener.local_addr().expect("fake server address");
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(TEST_TIMEOUT)).expect("timeout");
        script(FakeConn { stream, rbuf: Vec::new() })
    });
    (addr, handle)
}

/// A response frame with a fixed body.
pub(crate) fn frame(opcode: Opcode, id: u64, status: Status, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_response(&mut out, opcode as u8, id, status, &[body]);
    out
}

/// A HELLO answer from `shard_id` listing `ports`.
pub(crate) fn hello_frame(id: u64, shard_id: u16, ports: &[u16]) -> Vec<u8> {
    let hello = HelloResponse {
        version: hongbao_protocol::VERSION,
        reserved0: 0,
        shard_count: U16::new(ports.len() as u16),
        shard_id: U16::new(shard_id),
        reserved1: U16::new(0),
        max_body_len: U32::new(hongbao_protocol::limits::MAX_BODY_LEN),
        max_query_page: U32::new(hongbao_protocol::limits::MAX_QUERY_PAGE),
    };
    let ports: Vec<u8> = ports.iter().flat_map(|p| p.to_le_bytes()).collect();
    let mut out = Vec::new();
    write_response(&mut out, Opcode::Hello as u8, id, Status::Ok, &[hello.as_bytes(), &ports]);
    out
}

/// A QUERY answer: envelope `envelope` of `count` shares with `paid` claims, of
/// which those from `start` (at most `limit`) are listed. Claim `i` (0-based)
/// is user `1000 + i`, paid `i + 1` cents, order `i + 1`.
pub(crate) fn query_frame(id: u64, envelope: u64, count: u32, paid: u32, start: u32, limit: u32) -> Vec<u8> {
    // Enough for the 2,500 claims of 1 to 2,500 cents the paging tests pay.
    const TOTAL_CENTS: u64 = 10_000_000;
    let end = paid.min(start.saturating_add(limit)).max(start);
    let mut q = QueryResponse::new_zeroed();
    q.envelope = U64::new(envelope);
    q.sender = U64::new(7);
    q.total_cents = U64::new(TOTAL_CENTS);
    let paid_cents: u64 = (1..=u64::from(paid)).sum();
    q.paid_cents = U64::new(paid_cents);
    // The money rule: what is not paid (nor refunded) remains.
    q.remaining_cents = U64::new(TOTAL_CENTS - paid_cents);
    q.count = U32::new(count);
    q.paid_count = U32::new(paid);
    q.best_user = U64::new(1000 + u64::from(paid.saturating_sub(1)));
    q.best_amount_cents = U64::new(u64::from(paid));
    q.page_start = U32::new(start);
    q.page_len = U32::new(end - start);
    let mut claims = Vec::new();
    for i in start..end {
        let c = ClaimEntry {
            user: U64::new(1000 + u64::from(i)),
            amount_cents: U64::new(u64::from(i) + 1),
            order: U32::new(i + 1),
            reserved: U32::new(0),
        };
        claims.extend_from_slice(c.as_bytes());
    }
    let mut out = Vec::new();
    write_response(&mut out, Opcode::Query as u8, id, Status::Ok, &[q.as_bytes(), &claims]);
    out
}

/// The canned answer of a well-behaved server to `request`:
/// * CREATE: OK with envelope `(1 << 48) | 1`, refused with `count_out_of_range` when count is 0;
/// * GRAB: OK for user 1 (held until 5000), `sold_out` for anyone else (with a body);
/// * OPEN: OK for user 1 (123 cents, 4th), `no_reservation` otherwise;
/// * QUERY: 3 of 5 shares paid, or `not_found` for envelope 404;
/// * STATS: shard 0 with 9 requests.
pub(crate) fn canned(id: u64, request: &Request<'_>) -> Vec<u8> {
    match request {
        Request::Hello { .. } => hello_frame(id, 0, &[7401, 7402]),
        Request::Ping => frame(Opcode::Ping, id, Status::Ok, &[]),
        Request::Create(c) if c.count.get() == 0 => frame(Opcode::Create, id, Status::CountOutOfRange, &[]),
        Request::Create(_) => {
            let body = CreateResponse { envelope: U64::new((1 << 48) | 1), expires_at_ms: U64::new(99_000) };
            frame(Opcode::Create, id, Status::Ok, body.as_bytes())
        }
        Request::Grab(g) => {
            let mut body = GrabResponse::new_zeroed();
            let status = if g.user.get() == 1 {
                body.hold_until_ms = U64::new(5000);
                body.shares_free = U32::new(2);
                Status::Ok
            } else {
                Status::SoldOut
            };
            frame(Opcode::Grab, id, status, body.as_bytes())
        }
        Request::Open(o) if o.user.get() == 1 => {
            let body =
                OpenResponse { amount_cents: U64::new(123), order: U32::new(4), reserved: U32::new(0) };
            frame(Opcode::Open, id, Status::Ok, body.as_bytes())
        }
        Request::Open(_) => {
            frame(Opcode::Open, id, Status::NoReservation, OpenResponse::new_zeroed().as_bytes())
        }
        Request::Query(q) if q.envelope.get() == 404 => frame(Opcode::Query, id, Status::NotFound, &[]),
        Request::Query(q) => query_frame(id, q.envelope.get(), 5, 3, q.page_start.get(), q.page_limit.get()),
        Request::Stats => {
            let mut body = StatsResponse::new_zeroed();
            body.shard_count = U16::new(1);
            body.requests = U64::new(9);
            frame(Opcode::Stats, id, Status::Ok, body.as_bytes())
        }
    }
}

/// Serves [`canned`] answers until the client hangs up.
pub(crate) fn serve_canned(mut conn: FakeConn) {
    while let Some((id, request)) = conn.recv() {
        conn.send(&canned(id, &request));
    }
}

/// A std stream as a futures-lite stream, for driving a pipeline with
/// `futures_lite::future::block_on`: each poll blocks, which is harmless with
/// one task and the peer on another thread.
#[derive(Debug)]
pub(crate) struct BlockingStream(pub(crate) TcpStream);

impl BlockingStream {
    pub(crate) fn connect(addr: SocketAddr) -> io::Result<BlockingStream> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(TEST_TIMEOUT))?;
        Ok(BlockingStream(stream))
    }
}

impl AsyncRead for BlockingStream {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().0.read(buf))
    }
}

impl AsyncWrite for BlockingStream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().0.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().0.flush())
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().0.shutdown(std::net::Shutdown::Write))
    }
}
