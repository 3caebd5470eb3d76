//! The pipelined client: many requests in flight on one connection.
//!
//! A [`Pipeline`] is sans-runtime: it is generic over any
//! `futures_lite::io::{AsyncRead, AsyncWrite}` stream, so glommio's
//! `TcpStream` fits, and so does an in-memory stream in tests.
//!
//! The shape of one round: [`Pipeline::push`] encodes requests into a write
//! buffer and returns the request id each was given; [`Pipeline::flush`]
//! writes them all with one `write_all`; [`Pipeline::next`] returns answers
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
//! After any error the connection's state is unknown: drop the pipeline.

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use hongbao_protocol::response::Response;
use hongbao_protocol::{Opcode, Request};

use crate::answer::{self, Answer};
use crate::error::ClientError;
use crate::frame_buf::FrameBuf;

/// The largest `max_in_flight` a pipeline may be built with.
pub const MAX_IN_FLIGHT: usize = 4096;

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
    rbuf: FrameBuf,
    slots: Box<[Option<Slot>]>,
    in_flight: usize,
    next_request_id: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pipeline<S> {
    /// Wraps a connected stream allowing `max_in_flight` unanswered requests,
    /// which must be in `1..=MAX_IN_FLIGHT`.
    pub fn new(stream: S, max_in_flight: usize) -> Pipeline<S> {
        assert!((1..=MAX_IN_FLIGHT).contains(&max_in_flight), "max_in_flight {max_in_flight} out of range");
        Pipeline {
            stream,
            wbuf: Vec::with_capacity(max_in_flight * WRITE_BYTES_PER_REQUEST),
            rbuf: FrameBuf::new(),
            slots: vec![None; max_in_flight].into_boxed_slice(),
            in_flight: 0,
            next_request_id: 1,
        }
    }

    /// Encodes `request` into the write buffer and returns the request id it
    /// was given. Nothing is sent until [`Pipeline::flush`] (or `next`).
    pub fn push(&mut self, request: &Request<'_>) -> Result<u64, ClientError> {
        let max = self.slots.len();
        if self.in_flight == max {
            return Err(ClientError::TooManyInFlight { in_flight: self.in_flight, max });
        }
        // A free slot exists, so at most `max` ids are skipped.
        let (request_id, index) = loop {
            let id = self.next_request_id;
            self.next_request_id = self.next_request_id.wrapping_add(1);
            let index = self.slot_index(id);
            if self.slots[index].is_none() {
                break (id, index);
            }
        };
        request.encode(request_id, &mut self.wbuf);
        self.slots[index] = Some(Slot { request_id, opcode: request.opcode() });
        self.in_flight += 1;
        Ok(request_id)
    }

    /// Writes every pushed request in one `write_all`.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.wbuf).await?;
        self.stream.flush().await?;
        self.wbuf.clear();
        Ok(())
    }

    /// The next answer, waiting for it if none is buffered; `None` when no
    /// request is in flight. Pushed requests are flushed first, so that this
    /// never waits for an answer to a request not yet sent. The answer borrows
    /// the receive buffer until the next call.
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

    /// The most requests this pipeline lets be in flight.
    pub fn max_in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Bytes pushed and not yet flushed.
    pub fn unflushed_len(&self) -> usize {
        self.wbuf.len()
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
