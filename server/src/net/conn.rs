//! One client connection's state inside the shard's socket loop: what it has
//! received but not answered, the answers waiting to go out and the log
//! record they wait for, its receive and its send in the ring, and its
//! deadlines.
//!
//! A connection answers a batch only once every answer it produced before is
//! durable (so a group commit never waits for answers it does not cover), and
//! only while its output is below its limit ([`super::frames::out_max`]), it
//! has fewer than `--max-in-flight` requests taken and not yet sent back, and
//! no forwarded batch of its own is out; meanwhile what arrives is kept in `input`, up to
//! the buffered-bytes limit, past which its receive is cancelled (TCP
//! back-pressure) until it drains.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::forward::Forwarder;
use crate::net::frames::{Next, OUT_FLUSH_BYTES};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// Reading and answering.
    Open,
    /// Answer what is buffered, send everything, then close: the peer ended
    /// its side, sent a frame that closes the connection, or the shard stops.
    Draining,
    /// Everything is sent and the sending side shut: read and drop what the
    /// peer still sends until it closes too (or [`LINGER_MAX`] passes). A
    /// socket closed with unread input resets the connection, and the reset
    /// throws away the answers still in the send queue, the last status
    /// among them, before the peer has read them.
    Lingering,
    /// Close without sending more: a timeout, an error, or answers that can
    /// never become durable.
    Closing,
}

/// The longest a connection lingers for its peer to close after its last
/// answers, before it is cut off.
pub const LINGER_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// One connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub fd: OwnedFd,
    /// Its ring token: slot and generation.
    pub token: u64,
    /// The peer's address, counted against the per-source limit.
    pub source: Option<IpAddr>,
    /// Received bytes not answered yet: a partial frame, or frames that
    /// arrived while the connection could not answer.
    pub input: Vec<u8>,
    /// Answers not sent yet.
    pub out: Vec<u8>,
    /// The last log record the answers in `out` acknowledge (0: none).
    pub out_need: u64,
    /// When the first answer now in `out` was made.
    pub out_since: Option<Instant>,
    /// The second output buffer; `None` while the ring is sending it.
    pub spare: Option<Vec<u8>>,
    /// When the send in flight started, and when its first answer was made.
    pub send_started: Option<(Instant, Instant)>,
    /// What is left of a send the kernel cut short, to go again.
    pub resend: Option<(Vec<u8>, usize)>,
    /// Frames for other shards; `None` while a forwarded batch is out.
    pub forwarder: Option<Forwarder>,
    /// Whether HELLO presented the token (or none is needed).
    pub authenticated: bool,
    /// When an unauthenticated connection is cut off.
    pub auth_deadline: Instant,
    /// Since when `input` has held a partial frame the client has not finished.
    pub partial_since: Option<Instant>,
    /// A receive is armed in the ring (its last completion is still to come).
    pub receiving: bool,
    /// A cancel of that receive has been asked for.
    pub cancelling: bool,
    /// It is on the loop's list of connections waiting for the log.
    pub waiting: bool,
    /// The peer will send nothing more.
    pub peer_done: bool,
    /// Open, draining or closing.
    pub life: Life,
    /// The socket has been shut down (a closing connection's ring operations
    /// end at once).
    pub shut: bool,
    /// When it began to linger.
    pub linger_since: Option<Instant>,
    /// Its number among the shard's connections, from 1; never reused.
    pub serial: u64,
    /// Requests taken (answered, refused or forwarded) since the last send
    /// started, and those the send in flight answers.
    pub unsent: usize,
    /// Requests the send in flight answers.
    pub in_send: usize,
    /// Most requests taken and not yet sent back (`--max-in-flight`).
    pub in_flight_max: usize,
    /// Answer bytes it gathers before it writes them.
    pub out_max: usize,
    /// Something arrived since the last sweep; one that stays `false` through
    /// a sweep is idle and gives back its buffers' memory.
    pub active: bool,
}

impl Conn {
    /// A new, open connection.
    pub fn new(
        fd: OwnedFd,
        token: u64,
        source: Option<IpAddr>,
        forwarder: Forwarder,
        authenticated: bool,
        auth_deadline: Instant,
    ) -> Conn {
        Conn {
            fd,
            token,
            source,
            input: Vec::new(),
            out: Vec::new(),
            out_need: 0,
            out_since: None,
            spare: Some(Vec::new()),
            send_started: None,
            resend: None,
            forwarder: Some(forwarder),
            authenticated,
            auth_deadline,
            partial_since: None,
            receiving: false,
            cancelling: false,
            waiting: false,
            peer_done: false,
            life: Life::Open,
            shut: false,
            linger_since: None,
            serial: 0,
            unsent: 0,
            in_send: 0,
            in_flight_max: usize::MAX,
            out_max: OUT_FLUSH_BYTES,
            active: true,
        }
    }

    /// Whether it may answer frames now, given the last durable record.
    pub fn can_answer(&self, durable: u64) -> bool {
        matches!(self.life, Life::Open | Life::Draining)
            && self.forwarder.is_some()
            && self.out.len() < self.out_max
            && self.out_need <= durable
            && self.frames_allowed() > 0
    }

    /// Requests it may take now before it reaches its in-flight limit.
    pub fn frames_allowed(&self) -> usize {
        self.in_flight_max.saturating_sub(self.unsent + self.in_send)
    }

    /// Whether `out` may be sent now.
    pub fn can_send(&self, durable: u64) -> bool {
        self.life != Life::Closing && self.spare.is_some() && !self.out.is_empty() && self.out_need <= durable
    }

    /// Whether its receive should be armed: open, the peer still sending, and
    /// room for more.
    pub fn wants_receive(&self, buffered_max: usize) -> bool {
        match self.life {
            Life::Open => !self.peer_done && self.input.len() < buffered_max,
            // Read and drop: a client that writes its whole pipeline before
            // it reads must not block on a full window while its last
            // answers wait for it to read (what a draining connection still
            // answers was taken before it began to drain).
            Life::Draining | Life::Lingering => !self.peer_done,
            Life::Closing => false,
        }
    }

    /// Whether a draining connection has answered and sent everything: no
    /// input left, no batch out, no send in flight or waiting.
    pub fn drained(&self) -> bool {
        self.life == Life::Draining
            && self.forwarder.is_some()
            && self.out.is_empty()
            && self.input.is_empty()
            && self.spare.is_some()
    }

    /// Whether nothing of it is left in the ring or elsewhere, and it is done.
    pub fn finished(&self) -> bool {
        if self.receiving || self.spare.is_none() {
            return false;
        }
        match self.life {
            Life::Open => false,
            Life::Closing => true,
            // A peer that has not closed its side gets a lingering close.
            Life::Draining => self.drained() && self.peer_done,
            Life::Lingering => self.peer_done,
        }
    }

    /// Notes the outcome of answering a batch: the log record its answers
    /// show and so must wait for (`need`, 0 for none), what the frames said
    /// to do next, and the time.
    pub fn answered(&mut self, need: u64, next: Next, now: Instant) {
        self.out_need = self.out_need.max(need);
        if !self.out.is_empty() && self.out_since.is_none() {
            self.out_since = Some(now);
        }
        if next == Next::Close {
            self.input.clear();
            self.life = Life::Draining;
        }
        if self.peer_done && next == Next::Read {
            // A partial frame from a peer that sends nothing more never ends.
            self.input.clear();
        }
        // A partial frame left over starts (or keeps) the frame clock.
        if self.input.is_empty() || next != Next::Read {
            self.partial_since = None;
        } else if self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
    }

    /// Moves `out` into a send buffer for the ring; the caller sends it.
    pub fn take_out(&mut self, now: Instant) -> Vec<u8> {
        let mut buffer = self.spare.take().expect("can_send checked the spare buffer");
        std::mem::swap(&mut buffer, &mut self.out);
        self.send_started = Some((now, self.out_since.take().unwrap_or(now)));
        self.in_send = std::mem::take(&mut self.unsent);
        buffer
    }

    /// A send finished: the buffer is the spare again.
    pub fn sent(&mut self, buffer: Vec<u8>) {
        self.spare = Some(super::buffers::recycle(buffer));
        self.send_started = None;
        self.in_send = 0;
    }

    /// Bytes of memory its buffers hold (capacity, not contents).
    pub fn buffer_bytes(&self) -> usize {
        self.input.capacity()
            + self.out.capacity()
            + self.spare.as_ref().map_or(0, Vec::capacity)
            + self.resend.as_ref().map_or(0, |(buffer, _)| buffer.capacity())
            + self.forwarder.as_ref().map_or(0, Forwarder::buffer_bytes)
    }

    /// Called by each sweep: a connection that received nothing since the
    /// last one gives back the memory of its empty buffers (those in the ring
    /// or holding bytes are left alone).
    pub fn sweep_idle(&mut self) {
        if !std::mem::take(&mut self.active) {
            use super::buffers::shrink_idle;
            shrink_idle(&mut self.input);
            shrink_idle(&mut self.out);
            if let Some(spare) = self.spare.as_mut() {
                shrink_idle(spare);
            }
            if let Some(forwarder) = self.forwarder.as_mut() {
                forwarder.shrink_idle();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        let fd = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        Conn::new(fd, 1, None, Forwarder::new(1), true, Instant::now())
    }

    #[test]
    fn answers_wait_for_the_log_and_then_go_out() {
        let mut c = conn();
        assert!(c.can_answer(0));
        c.out.extend_from_slice(&[1; 24]);
        c.answered(5, Next::Read, Instant::now());
        assert!(!c.can_send(4), "answers acknowledging record 5 wait for it");
        assert!(!c.can_answer(4), "no new batch while the last one waits for the log");
        assert!(c.can_send(5));
        let buffer = c.take_out(Instant::now());
        assert_eq!(buffer.len(), 24);
        assert!(c.out.is_empty() && c.spare.is_none());
        assert!(!c.can_send(5), "one send at a time");
        assert!(c.send_started.is_some());
        c.sent(buffer);
        assert!(c.send_started.is_none());
        assert!(c.spare.as_ref().is_some_and(Vec::is_empty));
    }

    #[test]
    fn a_partial_frame_starts_the_frame_clock_and_a_close_drains() {
        let mut c = conn();
        let t = Instant::now();
        c.input.extend_from_slice(&[0; 10]);
        c.answered(0, Next::Read, t);
        assert_eq!(c.partial_since, Some(t));
        c.input.clear();
        c.answered(0, Next::Read, t);
        assert_eq!(c.partial_since, None);
        c.input.extend_from_slice(&[0; 10]);
        c.answered(0, Next::Close, t);
        assert_eq!(c.life, Life::Draining);
        assert!(c.input.is_empty(), "nothing after a closing frame is answered");
        assert!(c.drained(), "nothing buffered, nothing out, nothing in the ring");
        assert!(!c.finished(), "the peer has not closed: it lingers first");
        assert!(c.wants_receive(1 << 20), "a draining connection reads on, and drops what it reads");
        // The socket loop shuts the sending side and lingers: it reads (and
        // drops) until the peer closes, then it is done.
        c.life = Life::Lingering;
        assert!(c.wants_receive(1 << 20) && !c.can_answer(u64::MAX) && !c.finished());
        c.peer_done = true;
        assert!(c.finished() && !c.wants_receive(1 << 20));
        c.receiving = true;
        assert!(!c.finished(), "its receive must end first");
    }

    #[test]
    fn a_peer_that_closed_first_gets_no_lingering() {
        let mut c = conn();
        c.peer_done = true;
        c.answered(0, Next::Close, Instant::now());
        assert!(c.drained() && c.finished());
    }

    #[test]
    fn the_in_flight_limit_counts_requests_until_their_send_is_done() {
        let mut c = conn();
        c.in_flight_max = 10;
        c.unsent = 7;
        assert_eq!(c.frames_allowed(), 3);
        c.out.extend_from_slice(&[1; 24]);
        let buffer = c.take_out(Instant::now());
        assert_eq!((c.unsent, c.in_send, c.frames_allowed()), (0, 7, 3), "sending still counts");
        c.unsent = 3;
        assert!(!c.can_answer(0), "at the limit");
        c.sent(buffer);
        assert_eq!(c.frames_allowed(), 7);
        assert!(c.can_answer(0));
    }

    #[test]
    fn a_connection_idle_for_a_whole_sweep_gives_back_its_empty_buffers() {
        let mut c = conn();
        let big = 256 << 10;
        c.input = Vec::with_capacity(big);
        c.out = Vec::with_capacity(big);
        c.spare = Some(Vec::with_capacity(big));
        c.sweep_idle(); // Active since it was made: kept, and now idle.
        assert_eq!(c.input.capacity(), big, "a busy connection keeps its buffers");
        c.active = true; // Something arrives before the next sweep.
        c.sweep_idle();
        assert_eq!(c.out.capacity(), big);
        c.out.extend_from_slice(&[1; 24]); // Answers not sent yet are kept.
        c.sweep_idle(); // Nothing arrived since the last sweep: idle.
        assert_eq!((c.input.capacity(), c.spare.as_ref().unwrap().capacity()), (0, 0));
        assert_eq!((c.out.len(), c.out.capacity()), (24, big), "bytes are never dropped");
        assert_eq!(c.buffer_bytes(), big);
    }

    #[test]
    fn back_pressure_stops_receiving_at_the_limit() {
        let mut c = conn();
        assert!(c.wants_receive(100));
        c.input.resize(100, 0);
        assert!(!c.wants_receive(100));
        c.input.clear();
        c.peer_done = true;
        assert!(!c.wants_receive(100));
    }
}
