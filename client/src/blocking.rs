//! The blocking client: one request at a time over a `std::net::TcpStream`.
//!
//! For the CLI, tests and scripts, where simplicity beats throughput. Every
//! socket operation has a timeout (a call's whole answer, too), so a silent or dribbling server makes a call fail with
//! an I/O error instead of hanging. Answers are owned values; the allocations
//! this costs (a HELLO's ports, a QUERY page's claims) are bounded by the
//! protocol's limits, which the codec checks before anything is allocated.
//!
//! A call that times out is *abandoned*, not forgotten: its request was sent
//! and its answer may still come, ahead of the next call's on the same
//! stream. The client keeps the ids of up to [`MAX_ABANDONED_CALLS`] of them
//! and reads past their late answers, so one slow answer does not make every
//! later call fail. What an abandoned call did is unknown (PROTOCOL.md 3.3):
//! GRAB and OPEN are safe to send again, as they answer with the first one's
//! outcome; CREATE is not, since a second one makes a second envelope.
//! Past that limit, or after any failure that leaves the stream's framing in
//! doubt (a malformed frame, an answer to a request never sent, a failed
//! write, a hang-up), the client is *broken*: every later call returns
//! [`ClientError::Broken`] naming the first failure, instead of reading what
//! can no longer be trusted to be an answer.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use hongbao_protocol::body::EnvelopeKind;
use hongbao_protocol::limits::{MAX_BODY_LEN, MAX_QUERY_PAGE};
use hongbao_protocol::response::Response;
use hongbao_protocol::{EnvelopeId, Opcode, Request, Status};

use crate::answer::{self, Answer, AnswerBody, Claim, Created, EnvelopeSummary, Grabbed, Opened};
use crate::error::ClientError;
use crate::frame_buf::FrameBuf;
use crate::requests;
use crate::stats::ShardStats;

/// Connect, read and write timeout of [`Client::connect`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls that may time out with their answers still owed before the client
/// gives up on the connection. Each keeps its id so its late answer is read
/// past; a server that owes more than this many is not worth waiting for,
/// and the list stays small enough to search on every answer.
pub const MAX_ABANDONED_CALLS: usize = 16;

/// A blocking connection to one port of a hongbao server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    rbuf: FrameBuf,
    wbuf: Vec<u8>,
    next_request_id: u64,
    /// Token HELLO presents (empty: none).
    token: Vec<u8>,
    /// Longest a call waits for its whole answer (not only for each read:
    /// a server sending a byte at a time must not stretch a call to hours).
    timeout: Duration,
    /// Calls that timed out, oldest first, with the opcode each sent: their
    /// answers may still arrive, and are read past. At most
    /// [`MAX_ABANDONED_CALLS`]; allocated once, at that size.
    abandoned: Vec<(u64, Opcode)>,
    /// Why the connection cannot be used any more, once it cannot.
    broken: Option<String>,
    /// Longest body the server accepts: the protocol's limit until a HELLO
    /// answer says less. A longer request is refused before it is sent.
    max_body_len: u32,
}

/// How a call's exchange ended without its answer.
enum Unanswered {
    /// The deadline passed: the request was sent, its answer may still come.
    TimedOut,
    /// The stream can no longer be trusted.
    Failed(ClientError),
}

impl<E: Into<ClientError>> From<E> for Unanswered {
    fn from(e: E) -> Unanswered {
        Unanswered::Failed(e.into())
    }
}

/// A request's outcome: its status and its typed body. A refusal (any status
/// but OK) is a `Reply` too, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<T> {
    /// The outcome.
    pub status: Status,
    /// The body; an `Option` for opcodes that carry one only when OK.
    pub body: T,
}

/// What HELLO says about the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// Protocol version the server speaks on this connection.
    pub version: u8,
    /// Shards the server runs.
    pub shard_count: u16,
    /// The shard that answered.
    pub shard_id: u16,
    /// Largest body the server accepts.
    pub max_body_len: u32,
    /// Most claims one QUERY page returns.
    pub max_query_page: u32,
    /// The shard-aware port of each shard, in shard order.
    pub shard_ports: Vec<u16>,
}

/// One QUERY page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryPage {
    /// The envelope's totals.
    pub summary: EnvelopeSummary,
    /// Index of the first claim in `claims`.
    pub page_start: u32,
    /// The claims of this page, in opening order.
    pub claims: Vec<Claim>,
}

/// An envelope with every claim, gathered page by page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeReport {
    /// The totals as of the last page read.
    pub summary: EnvelopeSummary,
    /// Every claim, in opening order.
    pub claims: Vec<Claim>,
}

impl Client {
    /// Connects to `addr` with [`DEFAULT_TIMEOUT`].
    pub fn connect<A: ToSocketAddrs + fmt::Display>(addr: A) -> Result<Client, ClientError> {
        Client::connect_timeout(addr, DEFAULT_TIMEOUT)
    }

    /// Connects to `addr`, trying each address it resolves to; `timeout` bounds
    /// the connect, every later write and each call's whole wait for its answer.
    pub fn connect_timeout<A: ToSocketAddrs + fmt::Display>(
        addr: A,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let connect_error = |source| ClientError::Connect { addr: addr.to_string(), source };
        let mut last_error = None;
        for socket_addr in addr.to_socket_addrs().map_err(connect_error)? {
            match TcpStream::connect_timeout(&socket_addr, timeout) {
                Ok(stream) => return Client::from_stream(stream, timeout),
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            Some(source) => Err(connect_error(source)),
            None => Err(ClientError::NoAddress { addr: addr.to_string() }),
        }
    }

    /// Wraps a connected stream; `timeout` bounds every write, and the whole
    /// wait for each answer.
    pub fn from_stream(stream: TcpStream, timeout: Duration) -> Result<Client, ClientError> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        // One small request then a wait for its answer: Nagle would only delay it.
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            rbuf: FrameBuf::new(),
            wbuf: Vec::with_capacity(1024),
            next_request_id: 1,
            token: Vec::new(),
            timeout,
            abandoned: Vec::with_capacity(MAX_ABANDONED_CALLS),
            broken: None,
            max_body_len: MAX_BODY_LEN,
        })
    }

    /// The stream, for a caller that goes on with its own I/O (after HELLO,
    /// say). Every answer to a call that returned one has been read; the
    /// answers of abandoned calls ([`Client::abandoned_calls`]) may still
    /// come, and bytes the server sent past the last answer read (a frame
    /// it sent unasked, such as a busy before it closes) are dropped with
    /// the client.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Calls that timed out and whose answers may still arrive.
    pub fn abandoned_calls(&self) -> usize {
        self.abandoned.len()
    }

    /// Why the client is broken (every call fails), if it is.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// The server's address, e.g. to reach its shard-aware ports on the same host.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Sets the token every later HELLO presents (see [`Client::authenticate`]).
    pub fn set_token(&mut self, token: &[u8]) {
        self.token = token.to_vec();
    }

    /// HELLO with the token set by [`Client::set_token`] (none by default):
    /// the server's version, shards and shard-aware ports. On a server that
    /// requires a token, an OK answer also authenticates this connection.
    pub fn hello(&mut self) -> Result<Reply<Option<ServerInfo>>, ClientError> {
        // HELLO is rare: a copy of the token keeps the borrow simple.
        let token = self.token.clone();
        let answer = self.call(&requests::hello(&token)?)?;
        let AnswerBody::Hello(body) = answer.body else {
            unreachable!("hello answered as {:?}", answer.body)
        };
        let status = answer.status;
        let body = body.map(|(info, ports)| ServerInfo {
            version: info.version,
            shard_count: info.shard_count,
            shard_id: info.shard_id,
            max_body_len: info.max_body_len,
            max_query_page: info.max_query_page,
            shard_ports: ports.iter().collect(),
        });
        if let Some(info) = &body {
            self.max_body_len = info.max_body_len;
        }
        Ok(Reply { status, body })
    }

    /// Presents `token` with a HELLO and keeps it for later HELLOs. Returns the
    /// status: `Ok`, or `NotAuthenticated` for a token the server refuses.
    pub fn authenticate(&mut self, token: &[u8]) -> Result<Status, ClientError> {
        self.set_token(token);
        Ok(self.hello()?.status)
    }

    /// PING; the status says whether the server is well.
    pub fn ping(&mut self) -> Result<Status, ClientError> {
        Ok(self.call(&Request::Ping)?.status)
    }

    /// CREATE an envelope on the shard that answers; `expires_in_secs` of 0
    /// asks for the server's default.
    pub fn create(
        &mut self,
        sender: u64,
        total_cents: u64,
        count: u32,
        kind: EnvelopeKind,
        expires_in_secs: u32,
    ) -> Result<Reply<Option<Created>>, ClientError> {
        let answer = self.call(&requests::create(sender, total_cents, count, kind, expires_in_secs))?;
        let AnswerBody::Create(body) = answer.body else {
            unreachable!("create answered as {:?}", answer.body)
        };
        Ok(Reply { status: answer.status, body })
    }

    /// GRAB a share of `envelope` for `user`. The body comes with every status.
    pub fn grab(&mut self, envelope: EnvelopeId, user: u64) -> Result<Reply<Grabbed>, ClientError> {
        let answer = self.call(&requests::grab(envelope, user))?;
        let AnswerBody::Grab(body) = answer.body else { unreachable!("grab answered as {:?}", answer.body) };
        Ok(Reply { status: answer.status, body })
    }

    /// OPEN `user`'s share of `envelope`. The body comes with every status.
    pub fn open(&mut self, envelope: EnvelopeId, user: u64) -> Result<Reply<Opened>, ClientError> {
        let answer = self.call(&requests::open(envelope, user))?;
        let AnswerBody::Open(body) = answer.body else { unreachable!("open answered as {:?}", answer.body) };
        Ok(Reply { status: answer.status, body })
    }

    /// QUERY one page: totals and at most `page_limit` claims from `page_start`.
    pub fn query(
        &mut self,
        envelope: EnvelopeId,
        page_start: u32,
        page_limit: u32,
    ) -> Result<Reply<Option<QueryPage>>, ClientError> {
        let answer = self.call(&requests::query(envelope, page_start, page_limit))?;
        let AnswerBody::Query(body) = answer.body else {
            unreachable!("query answered as {:?}", answer.body)
        };
        // `page.len` was checked against MAX_QUERY_PAGE and the body's length.
        let body = body.map(|query| {
            let (summary, page) = *query;
            let mut claims = Vec::with_capacity(page.len as usize);
            claims.extend(page.iter());
            QueryPage { summary, page_start: page.page_start, claims }
        });
        Ok(Reply { status: answer.status, body })
    }

    /// QUERY every page of `envelope`, so the report lists every claim. Pages
    /// are asked for at [`MAX_QUERY_PAGE`]; a server with a smaller page simply
    /// takes more round trips. Claims paid while paging are included.
    pub fn query_all(&mut self, envelope: EnvelopeId) -> Result<Reply<Option<EnvelopeReport>>, ClientError> {
        let mut claims: Vec<Claim> = Vec::new();
        // The share count of the first page: a count never changes, so a
        // later page that says otherwise is not believed (nor let grow the
        // claims past it).
        let mut count: Option<u32> = None;
        loop {
            // Fits: claims.len() never exceeds an envelope's u32 count (checked below).
            let page_start = claims.len() as u32;
            let reply = self.query(envelope, page_start, MAX_QUERY_PAGE)?;
            let Some(page) = reply.body else { return Ok(Reply { status: reply.status, body: None }) };
            if page.page_start != page_start {
                return Err(ClientError::PageMismatch { expected: page_start, found: page.page_start });
            }
            let summary = page.summary;
            let inconsistent = |what: String| ClientError::InconsistentPage { page_start, what };
            let count = *count.get_or_insert(summary.count);
            if summary.count != count {
                return Err(inconsistent(format!(
                    "count {} after {count} on an earlier page",
                    summary.count
                )));
            }
            let left = summary.paid_count.saturating_sub(page_start);
            if page.claims.len() as u64 > u64::from(left) {
                return Err(inconsistent(format!(
                    "{} claims where {left} are paid past it",
                    page.claims.len()
                )));
            }
            // PROTOCOL.md 7.6: the claims with order start + 1 onwards, in order.
            for (i, claim) in page.claims.iter().enumerate() {
                let expected = u64::from(page_start) + i as u64 + 1;
                if u64::from(claim.order) != expected {
                    return Err(inconsistent(format!("claim {i} has order {} for {expected}", claim.order)));
                }
            }
            let page_empty = page.claims.is_empty();
            claims.extend(page.claims);
            if claims.len() as u64 > u64::from(count) {
                return Err(ClientError::TooManyClaims { claims: claims.len() as u64, count });
            }
            let listed = claims.len() as u32;
            if listed >= summary.paid_count {
                return Ok(Reply { status: reply.status, body: Some(EnvelopeReport { summary, claims }) });
            }
            // Each round adds a claim or ends, so this loop runs at most `count` times.
            if page_empty {
                return Err(ClientError::ClaimsMissing { claims: listed, paid_count: summary.paid_count });
            }
        }
    }

    /// STATS of the shard that answers.
    pub fn stats(&mut self) -> Result<Reply<Option<ShardStats>>, ClientError> {
        let answer = self.call(&Request::Stats)?;
        let AnswerBody::Stats(body) = answer.body else {
            unreachable!("stats answered as {:?}", answer.body)
        };
        Ok(Reply { status: answer.status, body: body.map(|s| s.shard_stats()) })
    }

    /// Sends `request` (any request, built with [`crate::requests`]), waits for its
    /// answer and checks that it is the answer to this request. The typed
    /// methods above are this with the body unpacked.
    ///
    /// A call that times out returns an I/O error of kind `TimedOut` and is
    /// abandoned (see the module doc): its outcome is unknown. Resend a GRAB
    /// or an OPEN to learn it; never blindly resend a CREATE.
    pub fn call(&mut self, request: &Request<'_>) -> Result<Answer<'_>, ClientError> {
        if let Some(cause) = &self.broken {
            return Err(ClientError::Broken { cause: cause.clone() });
        }
        // Refused unsent, so the connection is as good as before.
        requests::check_body_len(request, self.max_body_len)?;
        let request_id = self.next_request_id;
        // Id 0 is the server's for errors it cannot tie to a request.
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        let opcode = request.opcode();
        match self.exchange(request, request_id) {
            Ok(()) => {}
            Err(Unanswered::TimedOut) => return Err(self.abandon(request_id, opcode)),
            Err(Unanswered::Failed(e)) => return Err(self.break_with(e)),
        }
        // `exchange` left this call's answer, already checked, at the front.
        let Some(frame) = self.rbuf.next_frame()? else { unreachable!("exchange left a whole frame") };
        let response = Response::from_frame(&frame)?;
        match answer::decode(opcode, &response) {
            Ok(answer) => Ok(answer),
            // The frame was whole and ours, so the stream is still framed;
            // a body that breaks a money rule is the server's word, which a
            // caller (the load generator's checks) may want to go on past.
            Err(e @ ClientError::ContractBroken { .. }) => Err(e),
            Err(e) => {
                self.broken = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Sends the request and reads until this call's answer is the whole
    /// frame at the front of the receive buffer, reading past (and
    /// dropping) the late answers of abandoned calls. A timeout leaves any
    /// partial frame in the buffer, to be finished by the next call.
    fn exchange(&mut self, request: &Request<'_>, request_id: u64) -> Result<(), Unanswered> {
        self.wbuf.clear();
        request.encode(request_id, &mut self.wbuf);
        self.stream.write_all(&self.wbuf)?;

        // A timeout too long to add to the clock (Duration::MAX, say) sets
        // no deadline: the socket's own read timeout stands alone.
        let deadline = std::time::Instant::now().checked_add(self.timeout);
        loop {
            while !self.rbuf.has_frame()? {
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(Unanswered::TimedOut);
                    }
                    self.stream.set_read_timeout(Some(left))?;
                }
                let n = match self.stream.read(self.rbuf.spare()) {
                    Ok(0) => return Err(ClientError::Closed { in_flight: 1 + self.abandoned.len() }.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // A socket read timeout is EAGAIN on Linux: said one way,
                    // whichever of the two ran out first.
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                        return Err(Unanswered::TimedOut)
                    }
                    Err(e) => return Err(e.into()),
                };
                self.rbuf.filled(n);
            }
            let (found, opcode, status) = {
                let Some(frame) = self.rbuf.front()? else { unreachable!("has_frame said a frame is whole") };
                let response = Response::from_frame(&frame)?;
                (response.request_id, response.opcode, response.status)
            };
            if found == request_id {
                return Ok(());
            }
            if found == 0 {
                return Err(ClientError::Ended { status }.into());
            }
            let Some(at) = self.abandoned.iter().position(|&(id, _)| id == found) else {
                return Err(ClientError::RequestIdMismatch { expected: request_id, found }.into());
            };
            let (_, sent) = self.abandoned.remove(at);
            if opcode != sent as u8 {
                return Err(ClientError::OpcodeMismatch { expected: sent, found: opcode }.into());
            }
            // The late answer of an abandoned call: its caller has gone.
            self.rbuf.next_frame()?;
        }
    }

    /// Records a call that timed out with its answer owed; returns its error.
    fn abandon(&mut self, request_id: u64, opcode: Opcode) -> ClientError {
        let timed_out = io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no whole answer in time: the {opcode} request was sent and its outcome is unknown"),
        );
        if self.abandoned.len() == MAX_ABANDONED_CALLS {
            self.broken = Some(format!(
                "{} calls timed out with their answers owed, past the limit of {MAX_ABANDONED_CALLS}",
                MAX_ABANDONED_CALLS + 1
            ));
        } else {
            self.abandoned.push((request_id, opcode));
        }
        timed_out.into()
    }

    /// Marks the client broken by `e`, the first failure; returns `e`.
    fn break_with(&mut self, e: ClientError) -> ClientError {
        self.broken = Some(e.to_string());
        e
    }
}

impl<T> Reply<T> {
    /// Whether the request did what it asked.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

#[cfg(test)]
mod tests {
    use hongbao_protocol::body::{EnvelopeState, GrabResponse, OpenResponse};
    use hongbao_protocol::header::Header;
    use hongbao_protocol::{FrameError, Opcode};
    use zerocopy::{FromZeros, IntoBytes};

    use super::*;
    use crate::test_support::{self, frame, query_frame, serve_canned, FakeConn, TEST_TIMEOUT};

    fn client_for<T: Send + 'static>(
        script: impl FnOnce(FakeConn) -> T + Send + 'static,
    ) -> (Client, std::thread::JoinHandle<T>) {
        let (addr, server) = test_support::spawn(script);
        (Client::connect_timeout(addr, TEST_TIMEOUT).expect("connect"), server)
    }

    /// PING against `script` with `timeout`: it must time out, said as TimedOut.
    fn ping_times_out(script: impl FnOnce(FakeConn) + Send + 'static, timeout: Duration) {
        let (addr, server) = test_support::spawn(script);
        let mut client = Client::connect_timeout(addr, timeout).unwrap();
        match client.ping() {
            Err(ClientError::Io { source }) => assert_eq!(source.kind(), io::ErrorKind::TimedOut),
            other => panic!("no timeout: {other:?}"),
        }
        drop(client);
        let _ = server.join();
    }

    /// A server that sends its answer a byte every 100 ms keeps every read
    /// inside its timeout; the call's own deadline still ends it (a 2.4 s
    /// answer, a 1 s timeout). A server that says nothing ends it through
    /// the socket's own timeout (EAGAIN), told the same way.
    #[test]
    fn a_server_dribbling_its_answer_times_the_call_out() {
        let dribble = |mut conn: FakeConn| {
            let (id, request) = conn.recv().unwrap();
            for byte in test_support::canned(id, &request) {
                conn.send(&[byte]);
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        ping_times_out(dribble, Duration::from_secs(1));
        let silent = |mut conn: FakeConn| {
            let _ = conn.recv();
            let _ = conn.recv();
        };
        ping_times_out(silent, Duration::from_millis(300));
    }

    /// A timeout too long to add to the clock is no deadline, not a panic.
    #[test]
    fn the_longest_timeout_is_no_deadline() {
        let (addr, server) = test_support::spawn(serve_canned);
        let stream = std::net::TcpStream::connect(addr).unwrap();
        let mut client = Client::from_stream(stream, Duration::MAX).unwrap();
        assert_eq!(client.ping().unwrap(), Status::Ok);
        drop(client);
        server.join().unwrap();
    }

    #[test]
    fn every_call_maps_bodies_and_statuses() {
        let (mut client, server) = client_for(serve_canned);

        let info = client.hello().unwrap();
        assert!(info.is_ok());
        let info = info.body.unwrap();
        assert_eq!((info.version, info.shard_count, info.shard_id), (1, 2, 0));
        assert_eq!(info.shard_ports, vec![7401, 7402]);
        assert_eq!(info.max_query_page, MAX_QUERY_PAGE);

        assert_eq!(client.ping().unwrap(), Status::Ok);

        let created = client.create(7, 1000, 10, EnvelopeKind::Random, 0).unwrap();
        assert_eq!(created.status, Status::Ok);
        let created = created.body.unwrap();
        assert_eq!(created.envelope.shard(), 1);
        assert_eq!(created.expires_at_ms, 99_000);
        let refused = client.create(7, 1000, 0, EnvelopeKind::Fixed, 0).unwrap();
        assert_eq!(refused, Reply { status: Status::CountOutOfRange, body: None });

        let envelope = created.envelope;
        let grabbed = client.grab(envelope, 1).unwrap();
        assert_eq!(grabbed.status, Status::Ok);
        assert_eq!((grabbed.body.hold_until_ms, grabbed.body.shares_free), (5000, 2));
        let sold_out = client.grab(envelope, 2).unwrap();
        assert_eq!(sold_out, Reply { status: Status::SoldOut, body: Grabbed::default() });

        let opened = client.open(envelope, 1).unwrap();
        assert_eq!(opened, Reply { status: Status::Ok, body: Opened { amount_cents: 123, order: 4 } });
        let none = client.open(envelope, 3).unwrap();
        assert_eq!(none, Reply { status: Status::NoReservation, body: Opened::default() });

        let page = client.query(envelope, 1, 10).unwrap().body.unwrap();
        assert_eq!(page.page_start, 1);
        assert_eq!(page.summary.state, EnvelopeState::Active);
        assert_eq!((page.summary.count, page.summary.paid_count), (5, 3));
        assert_eq!(page.claims.iter().map(|c| c.order).collect::<Vec<_>>(), vec![2, 3]);
        let missing = client.query(EnvelopeId(404), 0, 10).unwrap();
        assert_eq!(missing, Reply { status: Status::NotFound, body: None });

        let stats = client.stats().unwrap().body.unwrap();
        assert_eq!((stats.shard_count, stats.requests), (1, 9));

        drop(client);
        server.join().unwrap();
    }

    #[test]
    fn a_frame_level_refusal_of_grab_reads_as_a_zero_body() {
        let (mut client, server) = client_for(|mut conn| {
            let (id, _) = conn.recv().unwrap();
            conn.send(&frame(Opcode::Grab, id, Status::FrameTooLarge, &[]));
        });
        let reply = client.grab(EnvelopeId(1), 1).unwrap();
        assert_eq!(reply, Reply { status: Status::FrameTooLarge, body: Grabbed::default() });
        server.join().unwrap();
    }

    #[test]
    fn an_answer_to_another_request_id_is_an_error() {
        let (mut client, server) = client_for(|mut conn| {
            let (id, _) = conn.recv().unwrap();
            conn.send(&frame(Opcode::Ping, id + 1, Status::Ok, &[]));
            id
        });
        let err = client.ping().unwrap_err();
        let sent = server.join().unwrap();
        assert!(
            matches!(err, ClientError::RequestIdMismatch { expected, found } if expected == sent && found == sent + 1),
            "{err:?}"
        );
    }

    /// Sends one PING-shaped or GRAB-shaped request and lets `reply` answer it.
    fn answered_by(reply: fn(u64) -> Vec<u8>, grab: bool) -> ClientError {
        let (mut client, server) = client_for(move |mut conn| {
            let (id, _) = conn.recv().unwrap();
            conn.send(&reply(id));
        });
        let err = if grab { client.grab(EnvelopeId(1), 1).unwrap_err() } else { client.ping().unwrap_err() };
        server.join().unwrap();
        err
    }

    #[test]
    fn malformed_answers_are_errors() {
        let err = answered_by(|_| b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), false);
        assert!(matches!(err, ClientError::Frame { source: FrameError::BadMagic { .. } }), "{err:?}");

        // A GRAB body of the wrong size.
        let err = answered_by(|id| frame(Opcode::Grab, id, Status::Ok, &[0; 16]), true);
        assert!(
            matches!(
                err,
                ClientError::Frame { source: FrameError::BadBodyLength { expected: 24, len: 16, .. } }
            ),
            "{err:?}"
        );

        // Reserved bytes of the GRAB body must be zero.
        let err = answered_by(
            |id| {
                let mut body = GrabResponse::new_zeroed();
                body.reserved.set(1);
                frame(Opcode::Grab, id, Status::Ok, body.as_bytes())
            },
            true,
        );
        assert!(matches!(err, ClientError::Frame { source: FrameError::ReservedNotZero { .. } }), "{err:?}");

        // A command-level refusal of GRAB still carries the whole body...
        let err = answered_by(|id| frame(Opcode::Grab, id, Status::NotFound, &[]), true);
        assert!(
            matches!(
                err,
                ClientError::Frame { source: FrameError::BadBodyLength { expected: 24, len: 0, .. } }
            ),
            "{err:?}"
        );
        // ...and a frame-level one carries none.
        let err = answered_by(|id| frame(Opcode::Grab, id, Status::MalformedFrame, &[0; 24]), true);
        assert!(matches!(err, ClientError::UnexpectedBody { opcode: Opcode::Grab, len: 24, .. }), "{err:?}");

        // A refused PING carries no body.
        let err = answered_by(|id| frame(Opcode::Ping, id, Status::Busy, &[1, 2]), false);
        assert!(matches!(err, ClientError::UnexpectedBody { opcode: Opcode::Ping, len: 2, .. }), "{err:?}");

        let err = answered_by(|id| frame(Opcode::Stats, id, Status::Ok, &[]), false);
        assert!(
            matches!(err, ClientError::OpcodeMismatch { expected: Opcode::Ping, found: 0x20 }),
            "{err:?}"
        );

        // The server echoing a request frame instead of answering.
        let err = answered_by(
            |id| {
                let mut out = Vec::new();
                Header::request(Opcode::Ping, id, 0).as_bytes().clone_into(&mut out);
                out
            },
            false,
        );
        assert!(matches!(err, ClientError::Frame { source: FrameError::WrongDirection { .. } }), "{err:?}");

        // A response to no request (id 0): the server says why it closes.
        fn unasked(status: Status) -> Vec<u8> {
            let mut out = Vec::new();
            hongbao_protocol::codec::write_response(&mut out, 0, 0, status, &[]);
            out
        }
        let err = answered_by(|_| unasked(Status::Busy), false);
        assert!(matches!(err, ClientError::Ended { status: Status::Busy }), "{err:?}");
        let err = answered_by(|_| unasked(Status::Timeout), true);
        assert!(matches!(err, ClientError::Ended { status: Status::Timeout }), "{err:?}");

        // Half a header, then the server hangs up.
        let err = answered_by(|id| frame(Opcode::Ping, id, Status::Ok, &[])[..10].to_vec(), false);
        assert!(matches!(err, ClientError::Closed { in_flight: 1 }), "{err:?}");
    }

    /// Well-formed answers that break a money rule are refused, naming the
    /// rule; the stream stays framed, so the next call still works.
    #[test]
    fn answers_that_break_money_rules_are_refused() {
        let (mut client, server) = client_for(|mut conn| {
            // An OPEN ok paying nothing.
            let (id, _) = conn.recv().unwrap();
            conn.send(&frame(Opcode::Open, id, Status::Ok, OpenResponse::new_zeroed().as_bytes()));
            // A refused OPEN that pays.
            let (id, _) = conn.recv().unwrap();
            let paid = OpenResponse { amount_cents: 5.into(), order: 1.into(), reserved: 0.into() };
            conn.send(&frame(Opcode::Open, id, Status::NoReservation, paid.as_bytes()));
            // A GRAB ok holding nothing.
            let (id, _) = conn.recv().unwrap();
            conn.send(&frame(Opcode::Grab, id, Status::Ok, GrabResponse::new_zeroed().as_bytes()));
            // QUERY totals a cent short, then a claim of 0 cents.
            let (id, _) = conn.recv().unwrap();
            let mut short = query_frame(id, 9, 5, 2, 0, 10);
            short[24 + 32] ^= 1; // remaining_cents' low byte
            conn.send(&short);
            let (id, _) = conn.recv().unwrap();
            let mut zero_claim = query_frame(id, 9, 5, 1, 0, 10);
            zero_claim[24 + 24] = 0; // paid_cents: 1 -> 0
            zero_claim[24 + 32] += 1; // remaining_cents: one more, so the sum holds
            zero_claim[24 + 104 + 8] = 0; // the claim's amount: 1 -> 0
            conn.send(&zero_claim);
            serve_canned(conn);
        });
        let rule = |e: ClientError| match e {
            ClientError::ContractBroken { rule, .. } => rule,
            other => panic!("not a broken contract: {other:?}"),
        };
        assert!(rule(client.open(EnvelopeId(9), 1).unwrap_err()).contains("at least 1 cent"));
        assert!(rule(client.open(EnvelopeId(9), 1).unwrap_err()).contains("refused OPEN pays nothing"));
        assert!(rule(client.grab(EnvelopeId(9), 1).unwrap_err()).contains("hold_until_ms is set"));
        assert!(rule(client.query(EnvelopeId(9), 0, 10).unwrap_err()).contains("== total_cents"));
        assert!(rule(client.query(EnvelopeId(9), 0, 10).unwrap_err()).contains("at least 1 cent"));
        assert_eq!(client.ping().unwrap(), Status::Ok, "the stream is still framed");
        drop(client);
        server.join().unwrap();
    }

    /// A server whose pages hold at most `page_max` claims, serving an envelope
    /// of `count` shares with `paid` claims; returns the page starts asked for.
    fn paging_server(count: u32, paid: u32, page_max: u32) -> impl FnOnce(FakeConn) -> Vec<u32> + Send {
        move |mut conn| {
            let mut starts = Vec::new();
            while let Some((id, request)) = conn.recv() {
                let Request::Query(q) = request else { panic!("expected QUERY, got {request:?}") };
                assert_eq!(q.page_limit.get(), MAX_QUERY_PAGE);
                let start = q.page_start.get();
                starts.push(start);
                conn.send(&query_frame(id, q.envelope.get(), count, paid, start, page_max));
            }
            starts
        }
    }

    #[test]
    fn query_all_pages_through_every_claim() {
        // Pages smaller than the client asks for: the client must not take a
        // short page for the last one.
        let (mut client, server) = client_for(paging_server(3000, 2500, 1000));
        let report = client.query_all(EnvelopeId(9)).unwrap();
        assert!(report.is_ok());
        let report = report.body.unwrap();
        assert_eq!(report.summary.paid_count, 2500);
        assert_eq!(report.claims.len(), 2500);
        for (i, claim) in report.claims.iter().enumerate() {
            assert_eq!((claim.user, claim.order), (1000 + i as u64, i as u32 + 1));
        }
        drop(client);
        assert_eq!(server.join().unwrap(), vec![0, 1000, 2000]);
    }

    #[test]
    fn query_all_of_an_unclaimed_envelope_takes_one_page() {
        let (mut client, server) = client_for(paging_server(4, 0, 1000));
        let report = client.query_all(EnvelopeId(9)).unwrap().body.unwrap();
        assert!(report.claims.is_empty());
        drop(client);
        assert_eq!(server.join().unwrap(), vec![0]);
    }

    #[test]
    fn query_all_passes_a_refusal_through() {
        let (mut client, server) = client_for(serve_canned);
        assert_eq!(
            client.query_all(EnvelopeId(404)).unwrap(),
            Reply { status: Status::NotFound, body: None }
        );
        drop(client);
        server.join().unwrap();
    }

    #[test]
    fn query_all_refuses_an_empty_page_before_the_last_claim() {
        let (mut client, server) = client_for(paging_server(10, 5, 0));
        let err = client.query_all(EnvelopeId(9)).unwrap_err();
        assert!(matches!(err, ClientError::ClaimsMissing { claims: 0, paid_count: 5 }), "{err:?}");
        drop(client);
        server.join().unwrap();
    }

    /// Pages that contradict themselves or each other are refused: claims
    /// not next in opening order, a count that changes between pages.
    #[test]
    fn query_all_refuses_pages_that_disagree() {
        /// Changes the QUERY answer that starts at the given claim.
        type Edit = fn(u32, &mut Vec<u8>);
        let lying = |edit: Edit| {
            move |mut conn: FakeConn| {
                let mut starts = Vec::new();
                while let Some((id, request)) = conn.recv() {
                    let Request::Query(q) = request else { panic!("expected QUERY, got {request:?}") };
                    let start = q.page_start.get();
                    starts.push(start);
                    let mut frame = query_frame(id, q.envelope.get(), 10, 6, start, 3);
                    edit(start, &mut frame);
                    conn.send(&frame);
                }
                starts
            }
        };
        // Header 24 bytes, QUERY body 104 (count at 80), then 24 bytes per
        // claim with its order at 16.
        let cases: [(Edit, &str); 2] = [
            // The second page lists its first claim again as order 3.
            (
                |start, frame| {
                    if start == 3 {
                        let at = 24 + 104 + 16;
                        frame[at..at + 4].copy_from_slice(&3u32.to_le_bytes());
                    }
                },
                "has order 3 for 4",
            ),
            // The second page says the envelope has 11 shares, not 10.
            (
                |start, frame| {
                    if start == 3 {
                        let at = 24 + 80;
                        assert_eq!(&frame[at..at + 4], &10u32.to_le_bytes(), "count's place");
                        frame[at..at + 4].copy_from_slice(&11u32.to_le_bytes());
                    }
                },
                "count 11 after 10",
            ),
        ];
        for (edit, said) in cases {
            let (mut client, server) = client_for(lying(edit));
            let err = client.query_all(EnvelopeId(9)).unwrap_err();
            assert!(
                matches!(&err, ClientError::InconsistentPage { page_start: 3, what } if what.contains(said)),
                "{err:?}"
            );
            drop(client);
            assert_eq!(server.join().unwrap(), vec![0, 3]);
        }
    }

    /// A call timed out with its answer owed: the next call, sent only
    /// after the first gave up, gets its own answer, the late one read
    /// past. The server holds the first answer until the second request is
    /// in, so the order is the one the bug needs, whatever the timing.
    #[test]
    fn a_late_answer_to_a_timed_out_call_is_read_past() {
        let (addr, server) = test_support::spawn(|mut conn: FakeConn| {
            let (first, ping) = conn.recv().unwrap();
            let (second, open) = conn.recv().unwrap();
            conn.send(&test_support::canned(first, &ping));
            conn.send(&test_support::canned(second, &open));
            let _ = conn.recv();
        });
        let mut client = Client::connect_timeout(addr, Duration::from_millis(200)).unwrap();
        let err = client.ping().unwrap_err();
        assert!(
            matches!(&err, ClientError::Io { source } if source.kind() == io::ErrorKind::TimedOut),
            "{err:?}"
        );
        assert!(err.to_string().contains("outcome is unknown"), "{err}");
        assert_eq!(client.abandoned_calls(), 1);
        let opened = client.open(EnvelopeId(1), 1).unwrap();
        assert_eq!(opened, Reply { status: Status::Ok, body: Opened { amount_cents: 123, order: 4 } });
        assert_eq!(client.abandoned_calls(), 0, "its late answer came and went");
        drop(client);
        server.join().unwrap();
    }

    /// A timeout that fires with half of the late answer read keeps that
    /// half: the next call finishes the frame, drops it, and reads its own.
    #[test]
    fn a_timeout_in_the_middle_of_a_frame_keeps_the_partial_frame() {
        let (addr, server) = test_support::spawn(|mut conn: FakeConn| {
            let (first, ping) = conn.recv().unwrap();
            let late = test_support::canned(first, &ping);
            conn.send(&late[..10]);
            let (second, grab) = conn.recv().unwrap();
            conn.send(&late[10..]);
            conn.send(&test_support::canned(second, &grab));
            let _ = conn.recv();
        });
        let mut client = Client::connect_timeout(addr, Duration::from_millis(200)).unwrap();
        assert!(client.ping().is_err());
        let grabbed = client.grab(EnvelopeId(1), 1).unwrap();
        assert_eq!((grabbed.status, grabbed.body.hold_until_ms), (Status::Ok, 5000));
        drop(client);
        server.join().unwrap();
    }

    /// One timeout more than the limit breaks the client: the next call
    /// sends nothing and names why.
    #[test]
    fn too_many_abandoned_calls_break_the_client() {
        let (addr, server) = test_support::spawn(|mut conn: FakeConn| {
            let mut received = 0;
            while conn.recv().is_some() {
                received += 1;
            }
            received
        });
        let mut client = Client::connect_timeout(addr, Duration::from_millis(50)).unwrap();
        for _ in 0..=MAX_ABANDONED_CALLS {
            let err = client.ping().unwrap_err();
            assert!(matches!(&err, ClientError::Io { .. }), "{err:?}");
        }
        assert!(client.broken().is_some());
        let err = client.ping().unwrap_err();
        assert!(
            matches!(&err, ClientError::Broken { cause } if cause.contains("past the limit of 16")),
            "{err:?}"
        );
        drop(client);
        assert_eq!(server.join().unwrap(), MAX_ABANDONED_CALLS + 1, "nothing sent once broken");
    }

    /// After garbage, later calls do not read on: they fail naming it.
    #[test]
    fn a_framing_error_breaks_the_client() {
        let (mut client, server) = client_for(|mut conn| {
            let _ = conn.recv().unwrap();
            conn.send(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            let _ = conn.recv();
        });
        let first = client.ping().unwrap_err();
        assert!(matches!(first, ClientError::Frame { .. }), "{first:?}");
        let err = client.ping().unwrap_err();
        assert!(matches!(&err, ClientError::Broken { cause } if *cause == first.to_string()), "{err:?}");
        drop(client);
        server.join().unwrap();
    }

    /// After a HELLO advertising a small max_body_len, a longer request is
    /// refused unsent, and the client goes on.
    #[test]
    fn a_body_above_the_advertised_limit_is_refused_unsent() {
        let (mut client, server) = client_for(|mut conn| {
            let (id, _) = conn.recv().unwrap();
            let mut hello = test_support::hello_frame(id, 0, &[7401]);
            // max_body_len, at body offset 8: 16 bytes, a GRAB's body.
            hello[24 + 8..24 + 12].copy_from_slice(&16u32.to_le_bytes());
            conn.send(&hello);
            let mut seen = Vec::new();
            while let Some((id, request)) = conn.recv() {
                seen.push(request.opcode());
                conn.send(&test_support::canned(id, &request));
            }
            seen
        });
        assert_eq!(client.hello().unwrap().body.unwrap().max_body_len, 16);
        let err = client.create(1, 100, 2, EnvelopeKind::Fixed, 0).unwrap_err();
        assert!(
            matches!(err, ClientError::BodyTooLong { opcode: Opcode::Create, len: 32, max: 16 }),
            "{err:?}"
        );
        assert_eq!(client.grab(EnvelopeId(1), 1).unwrap().status, Status::Ok);
        drop(client);
        assert_eq!(server.join().unwrap(), vec![Opcode::Grab], "the CREATE was never sent");
    }

    #[test]
    fn connect_to_a_closed_port_names_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = Client::connect_timeout(addr, TEST_TIMEOUT).unwrap_err();
        assert!(matches!(&err, ClientError::Connect { addr: a, .. } if *a == addr.to_string()), "{err:?}");
    }
}
