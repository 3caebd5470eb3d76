//! The pipelined client: many requests in flight on one connection.
//!
//! A [`Pipeline`] is sans-runtime: it is generic over any
//! `futures_lite::io::{AsyncRead, AsyncWrite}` stream, so glommio's
//! `TcpStream` fits, and so does an in-memory stream in tests.
//!
//! The shape of one round: [`Pipeline::push`] encodes requests into a write
//! buffer and returns the request id each was given; [`Pipeline::flush`]
//! writes them all (and is cancel-safe); [`Pipeline::next`] returns answers
//! one at a time, in whatever order the server sends them, each matched to its
//! request by id. Everything is allocated in [`Pipeline::new`] — the write
//! buffer, the fixed receive buffer and the in-flight table — so a steady
//! stream of requests does not allocate.
//!
//! The in-flight table has one slot per allowed request; a request with id `n`
//! lives in slot `n % slots`. Ids count up, skipping any whose slot is still
//! taken by a slow answer, so finding a slot and matching an answer are both
//! O(1), and a request id is never reused while it is in flight.
//!
//! A pipeline writes a whole batch before it reads any answer, and a server
//! writes answers while it reads. If a batch were larger than the socket
//! buffers could hold while the server sits blocked writing answers nobody
//! reads yet, both sides would wait forever. [`MAX_IN_FLIGHT`] requests of at
//! most 56 bytes (CREATE) make 56 KiB, under Linux's default receive buffer
//! (`net.ipv4.tcp_rmem`, 128 KiB) on the server's side alone.
//!
//! After any error the connection's state is unknown: drop the pipeline.

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use hongbao_protocol::limits::MAX_BODY_LEN;
use hongbao_protocol::response::Response;
use hongbao_protocol::{Opcode, Request};

use crate::answer::{self, Answer};
use crate::error::ClientError;
use crate::frame_buf::FrameBuf;
use crate::requests;

/// The largest `max_in_flight` a pipeline may be built with.
pub const MAX_IN_FLIGHT: usize = 1024;

/// A sensible depth for a load generator's connection.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Bytes of write buffer set aside per request in flight: the largest fixed
/// request (CREATE) is 24 + 32 bytes. A HELLO with a long token may grow it once.
const WRITE_BYTES_PER_REQUEST: usize = 64;

/// A request that has been pushed and not yet answered.
#[derive(Clone, Copy, Debug)]
struct Slot {
    request_id: u64,
    opcode: Opcode,
}

/// One connection with requests in flight. See the module doc.
#[derive(Debug)]
pub struct Pipeline<S> {
    stream: S,
    wbuf: Vec<u8>,
    /// Bytes of `wbuf` already written: a flush cut short (its future
    /// dropped by a caller's timeout) resumes here, never from the start,
    /// so no request is ever sent twice.
    written: usize,
    rbuf: FrameBuf,
    slots: Box<[Option<Slot>]>,
    in_flight: usize,
    next_request_id: u64,
    /// Longest body the server accepts: the protocol's limit until HELLO
    /// says less ([`Pipeline::set_max_body_len`]).
    max_body_len: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pipeline<S> {
    /// Wraps a connected stream allowing `max_in_flight` unanswered requests,
    /// which must be in `1..=MAX_IN_FLIGHT`: checked before the buffers it
    /// sizes are allocated, and a depth outside is
    /// [`ClientError::DepthOutOfRange`] (it is a caller's setting, often a
    /// command-line flag, so not a panic).
    pub fn new(stream: S, max_in_flight: usize) -> Result<Pipeline<S>, ClientError> {
        if !(1..=MAX_IN_FLIGHT).contains(&max_in_flight) {
            return Err(ClientError::DepthOutOfRange { max_in_flight, max: MAX_IN_FLIGHT });
        }
        Ok(Pipeline {
            stream,
            wbuf: Vec::with_capacity(max_in_flight * WRITE_BYTES_PER_REQUEST),
            written: 0,
            rbuf: FrameBuf::new(),
            slots: vec![None; max_in_flight].into_boxed_slice(),
            in_flight: 0,
            next_request_id: 1,
            max_body_len: MAX_BODY_LEN,
        })
    }

    /// Sets the longest body [`Pipeline::push`] lets be sent: the
    /// `max_body_len` the server advertised in HELLO (the protocol's limit
    /// stands above it).
    pub fn set_max_body_len(&mut self, max_body_len: u32) {
        self.max_body_len = max_body_len.min(MAX_BODY_LEN);
    }

    /// Encodes `request` into the write buffer and returns the request id it
    /// was given. Nothing is sent until [`Pipeline::flush`] (or `next`). A
    /// body longer than the server accepts is refused
    /// ([`ClientError::BodyTooLong`]) before anything is encoded.
    pub fn push(&mut self, request: &Request<'_>) -> Result<u64, ClientError> {
        requests::check_body_len(request, self.max_body_len)?;
        let max = self.slots.len();
        if self.in_flight == max {
            return Err(ClientError::TooManyInFlight { in_flight: self.in_flight, max });
        }
        // A free slot exists, so at most `max + 1` ids are skipped.
        let (request_id, index) = loop {
            let id = self.next_request_id;
            self.next_request_id = self.next_request_id.wrapping_add(1);
            let index = self.slot_index(id);
            // Id 0 is the server's for errors it cannot tie to a request.
            if id != 0 && self.slots[index].is_none() {
                break (id, index);
            }
        };
        request.encode(request_id, &mut self.wbuf);
        self.slots[index] = Some(Slot { request_id, opcode: request.opcode() });
        self.in_flight += 1;
        Ok(request_id)
    }

    /// Writes every pushed request not written yet. Cancel-safe: what each
    /// write took is counted as it returns, so a flush whose future is
    /// dropped part way resumes at the next byte (a request resent would be
    /// done twice: a second envelope created).
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        while self.written < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.written..]).await {
                Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.stream.flush().await?;
        self.wbuf.clear();
        self.written = 0;
        Ok(())
    }

    /// The next answer, waiting for it if none is buffered; `None` when no
    /// request is in flight. Pushed requests are flushed first, so that this
    /// never waits for an answer to a request not yet sent. The answer borrows
    /// the receive buffer until the next call.
    ///
    /// Cancel-safe, as [`Pipeline::flush`] is: bytes read are kept in the
    /// receive buffer as each read returns, so a caller's time limit (say
    /// `glommio::timer::timeout`) may drop this future and call again, and
    /// no answer is lost or torn. The pipeline sets no limit of its own:
    /// how long an answer may take is the caller's to say, and a request
    /// given up on is still in flight ([`Pipeline::unanswered`]).
    pub async fn next(&mut self) -> Result<Option<Answer<'_>>, ClientError> {
        if self.in_flight == 0 {
            return Ok(None);
        }
        self.flush().await?;
        while !self.rbuf.has_frame()? {
            let n = match self.stream.read(self.rbuf.spare()).await {
                Ok(0) => return Err(ClientError::Closed { in_flight: self.in_flight }),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            self.rbuf.filled(n);
        }
        self.take_answer().map(Some)
    }

    /// An answer already in the receive buffer, without reading the socket.
    pub fn next_buffered(&mut self) -> Result<Option<Answer<'_>>, ClientError> {
        if !self.rbuf.has_frame()? {
            return Ok(None);
        }
        self.take_answer().map(Some)
    }

    /// Requests pushed and not yet answered (flushed or not).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The requests pushed and not yet answered, as (request id, opcode), in
    /// no particular order. After an error these are the requests whose
    /// outcome is unknown: each may or may not have been done (a CREATE
    /// among them may have made an envelope), and only a QUERY, or the
    /// answer a retry gets, can tell.
    pub fn unanswered(&self) -> impl Iterator<Item = (u64, Opcode)> + '_ {
        self.slots.iter().flatten().map(|slot| (slot.request_id, slot.opcode))
    }

    /// The most requests this pipeline lets be in flight.
    pub fn max_in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Bytes pushed and not yet flushed.
    pub fn unflushed_len(&self) -> usize {
        self.wbuf.len() - self.written
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, e.g. to set socket options.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Gives the stream back; unread answers and unflushed requests are lost.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Takes the whole frame at the front of the receive buffer and matches it
    /// to its slot. Call only when `has_frame` said yes.
    fn take_answer(&mut self) -> Result<Answer<'_>, ClientError> {
        let slots_len = self.slots.len() as u64;
        let Some(frame) = self.rbuf.next_frame()? else { unreachable!("has_frame said a frame is whole") };
        let response = Response::from_frame(&frame)?;
        let request_id = response.request_id;
        if request_id == 0 {
            // Ids start at 1: id 0 answers no request, it ends the connection.
            return Err(ClientError::Ended { status: response.status });
        }
        let index = (request_id % slots_len) as usize;
        let slot = match self.slots[index] {
            Some(slot) if slot.request_id == request_id => slot,
            _ => return Err(ClientError::UnknownRequestId { request_id }),
        };
        self.slots[index] = None;
        assert!(self.in_flight > 0);
        self.in_flight -= 1;
        answer::decode(slot.opcode, &response)
    }

    fn slot_index(&self, request_id: u64) -> usize {
        (request_id % self.slots.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;
    use hongbao_protocol::body::EnvelopeKind;
    use hongbao_protocol::{EnvelopeId, Status};

    use super::*;
    use crate::answer::{AnswerBody, Opened};
    use crate::requests;
    use crate::test_support::{self, canned, frame, serve_canned, BlockingStream, FakeConn};

    fn pipeline_for<T: Send + 'static>(
        max_in_flight: usize,
        script: impl FnOnce(FakeConn) -> T + Send + 'static,
    ) -> (Pipeline<BlockingStream>, std::thread::JoinHandle<T>) {
        let (addr, server) = test_support::spawn(script);
        (Pipeline::new(BlockingStream::connect(addr).expect("connect"), max_in_flight).unwrap(), server)
    }

    /// A stream that takes at most `per_write` bytes a write and answers
    /// `Pending` to every other poll, as a slow socket does: a flush polled
    /// once and dropped has written part of its batch.
    #[derive(Debug)]
    struct Trickle {
        written: Vec<u8>,
        per_write: usize,
        ready: bool,
    }

    impl futures_lite::io::AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.ready = !self.ready;
            if !self.ready {
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            let n = buf.len().min(self.per_write);
            self.written.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    impl futures_lite::io::AsyncRead for Trickle {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Pending
        }
    }

    #[test]
    fn a_flush_dropped_part_way_resumes_and_sends_each_byte_once() {
        let mut pipeline = Pipeline::new(trickle(), 8).unwrap();
        let mut expected = Vec::new();
        for user in 1..=3 {
            let request = requests::create(user, 100, 2, EnvelopeKind::Fixed, 60);
            let id = pipeline.push(&request).unwrap();
            request.encode(id, &mut expected);
        }
        // Polled a few times and dropped each time, as a caller's timeout
        // would: every poll that wrote kept its bytes.
        for _ in 0..5 {
            let mut flush = std::pin::pin!(pipeline.flush());
            let waker = std::task::Waker::noop();
            let _ = std::future::Future::poll(flush.as_mut(), &mut std::task::Context::from_waker(waker));
            let _ = std::future::Future::poll(flush.as_mut(), &mut std::task::Context::from_waker(waker));
        }
        assert!(pipeline.stream.written.len() < expected.len(), "cut short, as meant");
        assert_eq!(pipeline.unflushed_len(), expected.len() - pipeline.stream.written.len());
        block_on(pipeline.flush()).unwrap();
        assert_eq!(pipeline.stream.written, expected, "every request once, in order");
        block_on(pipeline.flush()).unwrap();
        assert_eq!(pipeline.stream.written, expected, "nothing more to send");
    }

    fn trickle() -> Trickle {
        Trickle { written: Vec::new(), per_write: 10, ready: false }
    }

    /// A depth outside 1..=MAX_IN_FLIGHT is an error, not a panic.
    #[test]
    fn a_depth_out_of_range_is_an_error() {
        for depth in [0, MAX_IN_FLIGHT + 1] {
            let err = Pipeline::new(trickle(), depth).unwrap_err();
            assert!(
                matches!(err, ClientError::DepthOutOfRange { max_in_flight, max: MAX_IN_FLIGHT } if max_in_flight == depth),
                "{err:?}"
            );
        }
        assert_eq!(Pipeline::new(trickle(), MAX_IN_FLIGHT).unwrap().max_in_flight(), MAX_IN_FLIGHT);
    }

    /// A body above the server's advertised limit is refused at push:
    /// nothing is written, no slot is taken.
    #[test]
    fn a_body_above_the_servers_limit_is_refused_before_it_is_sent() {
        let mut pipeline = Pipeline::new(trickle(), 4).unwrap();
        pipeline.set_max_body_len(16);
        pipeline.push(&requests::grab(EnvelopeId(1), 1)).unwrap();
        let err = pipeline.push(&requests::create(1, 100, 2, EnvelopeKind::Fixed, 0)).unwrap_err();
        assert!(
            matches!(err, ClientError::BodyTooLong { opcode: Opcode::Create, len: 32, max: 16 }),
            "{err:?}"
        );
        assert_eq!((pipeline.in_flight(), pipeline.unflushed_len()), (1, 24 + 16));
    }

    #[test]
    fn answers_out_of_order_are_matched_by_request_id() {
        // Reads all five requests, then answers them last first.
        let (mut pipeline, server) = pipeline_for(8, |mut conn| {
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(conn.recv().unwrap());
            }
            for (id, request) in got.iter().rev() {
                conn.send(&canned(*id, request));
            }
            assert!(conn.recv().is_none());
        });
        let envelope = EnvelopeId::new(1, 1);
        let sent = [
            pipeline.push(&requests::grab(envelope, 1)).unwrap(),
            pipeline.push(&requests::open(envelope, 1)).unwrap(),
            pipeline.push(&requests::create(7, 100, 2, EnvelopeKind::Fixed, 60)).unwrap(),
            pipeline.push(&requests::query(envelope, 0, 10)).unwrap(),
            pipeline.push(&requests::open(envelope, 2)).unwrap(),
        ];
        assert_eq!(pipeline.in_flight(), 5);
        let mut seen = Vec::new();
        block_on(async {
            pipeline.flush().await.unwrap();
            assert_eq!(pipeline.unflushed_len(), 0);
            while let Some(answer) = pipeline.next().await.unwrap() {
                let which = sent.iter().position(|id| *id == answer.request_id).expect("an id we sent");
                match (which, answer.body) {
                    (0, AnswerBody::Grab(g)) => assert_eq!((answer.status, g.shares_free), (Status::Ok, 2)),
                    (1, AnswerBody::Open(o)) => {
                        assert_eq!((answer.status, o), (Status::Ok, Opened { amount_cents: 123, order: 4 }))
                    }
                    (2, AnswerBody::Create(c)) => assert_eq!(c.unwrap().envelope, envelope),
                    (3, AnswerBody::Query(Some(query))) => {
                        let (summary, page) = &*query;
                        assert_eq!(summary.paid_count, 3);
                        assert_eq!(page.iter().map(|c| c.order).collect::<Vec<_>>(), vec![1, 2, 3]);
                    }
                    (4, AnswerBody::Open(o)) => {
                        assert_eq!((answer.status, o), (Status::NoReservation, Opened::default()))
                    }
                    other => panic!("answer {other:?} does not fit its request"),
                }
                seen.push(which);
            }
        });
        assert_eq!(seen, vec![4, 3, 2, 1, 0]);
        assert_eq!(pipeline.in_flight(), 0);
        drop(pipeline);
        server.join().unwrap();
    }

    #[test]
    fn an_answer_to_no_request_in_flight_is_an_error() {
        let (mut pipeline, server) = pipeline_for(4, |mut conn| {
            let (id, _) = conn.recv().unwrap();
            conn.send(&frame(Opcode::Ping, id + 100, Status::Ok, &[]));
        });
        let id = pipeline.push(&Request::Ping).unwrap();
        let err = block_on(async { pipeline.next().await.map(|a| a.map(|a| a.request_id)) }).unwrap_err();
        assert!(
            matches!(err, ClientError::UnknownRequestId { request_id } if request_id == id + 100),
            "{err:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn an_answer_to_request_id_0_ends_the_connection_with_its_status() {
        let (mut pipeline, server) = pipeline_for(4, |mut conn| {
            let _ = conn.recv().unwrap();
            let mut unasked = Vec::new();
            hongbao_protocol::codec::write_response(&mut unasked, 0, 0, Status::Timeout, &[]);
            conn.send(&unasked);
        });
        pipeline.push(&Request::Ping).unwrap();
        let err = block_on(async { pipeline.next().await.map(|a| a.map(|a| a.request_id)) }).unwrap_err();
        assert!(matches!(err, ClientError::Ended { status: Status::Timeout }), "{err:?}");
        server.join().unwrap();
    }

    #[test]
    fn the_in_flight_limit_holds_and_ids_skip_busy_slots() {
        // Answers the second request first and the first last.
        let (mut pipeline, server) = pipeline_for(2, |mut conn| {
            let first = conn.recv().unwrap();
            let second = conn.recv().unwrap();
            conn.send(&canned(second.0, &second.1));
            let third = conn.recv().unwrap();
            conn.send(&canned(third.0, &third.1));
            conn.send(&canned(first.0, &first.1));
            [first.0, second.0, third.0]
        });
        let a = pipeline.push(&Request::Ping).unwrap();
        let b = pipeline.push(&Request::Ping).unwrap();
        let err = pipeline.push(&Request::Ping).unwrap_err();
        assert!(matches!(err, ClientError::TooManyInFlight { in_flight: 2, max: 2 }), "{err:?}");
        block_on(async {
            assert_eq!(pipeline.next().await.unwrap().unwrap().request_id, b);
            // `a` still holds its slot, so the next id is the one after it
            // that lands on `b`'s freed slot.
            let c = pipeline.push(&Request::Stats).unwrap();
            assert_eq!(c, b + 2);
            let answer = pipeline.next().await.unwrap().unwrap();
            assert_eq!(answer.request_id, c);
            assert!(matches!(answer.body, AnswerBody::Stats(Some(_))));
            assert_eq!(pipeline.next().await.unwrap().unwrap().request_id, a);
            assert!(pipeline.next().await.unwrap().is_none());
        });
        drop(pipeline);
        assert_eq!(server.join().unwrap(), [a, b, b + 2]);
    }

    #[test]
    fn many_rounds_reuse_the_buffers() {
        // Deep enough that the answers (200 bytes each) overrun the receive
        // buffer several times a round; shallow enough that one round of
        // requests fits in the socket buffers (see the module doc).
        const DEPTH: usize = 512;
        let (mut pipeline, server) = pipeline_for(DEPTH, serve_canned);
        block_on(async {
            for round in 0..20u64 {
                let mut sent = 0;
                for i in 0..DEPTH as u64 {
                    let envelope = EnvelopeId::new(2, round * 10_000 + i + 1);
                    pipeline.push(&requests::query(envelope, 0, 3)).unwrap();
                    sent += 1;
                }
                // Some answers may already be buffered from the read before;
                // `next` drains those first and reads the rest.
                let mut answered = 0;
                while let Some(answer) = pipeline.next().await.unwrap() {
                    assert_eq!(answer.status, Status::Ok);
                    answered += 1;
                }
                assert_eq!(answered, sent);
                assert!(pipeline.next_buffered().unwrap().is_none());
            }
        });
        drop(pipeline);
        server.join().unwrap();
    }

    #[test]
    fn a_hang_up_with_answers_owed_is_an_error() {
        let (mut pipeline, server) = pipeline_for(4, |mut conn| {
            conn.recv().unwrap();
            conn.recv().unwrap();
        });
        pipeline.push(&Request::Ping).unwrap();
        pipeline.push(&Request::Ping).unwrap();
        let err = block_on(async { pipeline.next().await.map(|a| a.is_some()) }).unwrap_err();
        assert!(matches!(err, ClientError::Closed { in_flight: 2 }), "{err:?}");
        server.join().unwrap();
    }

    #[test]
    fn unanswered_names_the_requests_whose_outcome_is_unknown() {
        let (mut pipeline, server) = pipeline_for(4, |mut conn| {
            let (first, _) = conn.recv().unwrap();
            conn.recv().unwrap();
            conn.recv().unwrap();
            conn.send(&frame(Opcode::Ping, first, Status::Ok, &[]));
            // Hangs up owing the CREATE and the OPEN.
        });
        let ping = pipeline.push(&Request::Ping).unwrap();
        let create = pipeline.push(&requests::create(1, 100, 2, EnvelopeKind::Fixed, 60)).unwrap();
        let open = pipeline.push(&requests::open(EnvelopeId(7), 3)).unwrap();
        let mut all: Vec<(u64, Opcode)> = pipeline.unanswered().collect();
        all.sort_by_key(|(id, _)| *id);
        assert_eq!(all, [(ping, Opcode::Ping), (create, Opcode::Create), (open, Opcode::Open)]);
        let first = block_on(async { pipeline.next().await.map(|a| a.map(|a| a.request_id)) }).unwrap();
        assert_eq!(first, Some(ping));
        let err = block_on(async { pipeline.next().await.map(|a| a.is_some()) }).unwrap_err();
        assert!(matches!(err, ClientError::Closed { in_flight: 2 }), "{err:?}");
        let mut unknown: Vec<(u64, Opcode)> = pipeline.unanswered().collect();
        unknown.sort_by_key(|(id, _)| *id);
        assert_eq!(unknown, [(create, Opcode::Create), (open, Opcode::Open)]);
        server.join().unwrap();
    }

    /// A stream that takes every write and gives `answers` back `per_read`
    /// bytes a read, answering `Pending` to every other poll.
    #[derive(Debug)]
    struct TrickleAnswers {
        answers: Vec<u8>,
        at: usize,
        per_read: usize,
        ready: bool,
    }

    impl futures_lite::io::AsyncRead for TrickleAnswers {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.ready = !self.ready;
            if !self.ready || self.at == self.answers.len() {
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            let n = buf.len().min(self.per_read).min(self.answers.len() - self.at);
            buf[..n].copy_from_slice(&self.answers[self.at..self.at + n]);
            self.at += n;
            std::task::Poll::Ready(Ok(n))
        }
    }

    impl futures_lite::io::AsyncWrite for TrickleAnswers {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_next_dropped_part_way_through_an_answer_loses_none_of_it() {
        let envelope = EnvelopeId::new(1, 1);
        let answers = [canned(1, &requests::open(envelope, 1)), canned(2, &Request::Ping)].concat();
        let stream = TrickleAnswers { answers, at: 0, per_read: 5, ready: false };
        let mut pipeline = Pipeline::new(stream, 4).unwrap();
        assert_eq!(pipeline.push(&requests::open(envelope, 1)).unwrap(), 1);
        assert_eq!(pipeline.push(&Request::Ping).unwrap(), 2);
        let waker = std::task::Waker::noop();
        let mut got = Vec::new();
        // Each next is polled twice, then dropped, as a caller's time limit would.
        for _ in 0..100 {
            let mut next = std::pin::pin!(pipeline.next());
            for _ in 0..2 {
                if let std::task::Poll::Ready(answer) =
                    std::future::Future::poll(next.as_mut(), &mut std::task::Context::from_waker(waker))
                {
                    let answer = answer.unwrap().expect("requests are in flight");
                    let opened = match answer.body {
                        AnswerBody::Open(o) => Some(o),
                        _ => None,
                    };
                    got.push((answer.request_id, answer.status, opened));
                    break;
                }
            }
            if got.len() == 2 {
                break;
            }
        }
        assert_eq!(got.len(), 2, "both answers came whole: {got:?}");
        let paid = Some(Opened { amount_cents: 123, order: 4 });
        assert_eq!(got, [(1, Status::Ok, paid), (2, Status::Ok, None)]);
        assert_eq!(pipeline.in_flight(), 0);
    }
}
