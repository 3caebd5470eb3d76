//! The shard's socket loop: one task that serves every connection of the
//! shard through one [`Ring`].
//!
//! ```text
//!   ring.poll ──► accepted ─────────► limits ─► new Conn, receive armed
//!             ├─► received bytes ───► answer whole frames at once (from the
//!             │                       ring's buffer when nothing is pending)
//!             ├─► a send finished ──► the next batch may go
//!             └─► a receive ended ──► end of stream, re-arm, or close
//!   then, for every connection touched:
//!     answers durable? ─► send   buffered frames and allowed? ─► answer
//!     frames for other shards ─► a forwarding task (answers come back here)
//!     too much buffered ─► cancel the receive (back-pressure) ... re-arm later
//! ```
//!
//! The loop spins while there is work (and for `--spin-us` after), so under
//! load no request waits for a wake-up; then it parks on the shard's doorbell,
//! which the ring's eventfd, the log's group commit and returning forwarded
//! batches ring, and looks at the ring now and then for work whose eventfd
//! signal the kernel has put off (see `Ring::park`). Every 100 ms it sweeps the connections for the deadlines:
//! authentication, a frame left unfinished, a send the client does not read.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hongbao_protocol::codec::{bytes_to_complete, write_response};
use hongbao_protocol::Status;
use hongbao_uring::{socket, Completion, Doorbell, Ring};

use crate::counters::add;
use crate::forward::Forwarder;
use crate::net::conn::{Conn, Life, LINGER_MAX};
use crate::net::frames::answer_buffer;
use crate::net::listener::{count_source, over_limit, refuse, release_source, source_of, Listener};
use crate::shard::{MeshSenders, Shard};

/// How often deadlines are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// The longest a parked loop sleeps without a ring of its doorbell.
const PARK_MAX: Duration = Duration::from_millis(100);
/// While the loop is busy, how often it steps aside so glommio polls its own
/// rings (log writes and syncs, the mesh, timers). A task that keeps waking
/// itself is run again before glommio looks at its rings.
const BREATHE_EVERY: Duration = Duration::from_micros(100);
/// The timer of a step aside: just long enough not to be due at once.
const BREATH: Duration = Duration::from_micros(2);
/// TCP keepalive of client connections: the first probe after this long
/// without traffic...
const KEEPALIVE_IDLE_SECS: u32 = 60;
/// ...then one this often...
const KEEPALIVE_INTERVAL_SECS: u32 = 10;
/// ...and the connection is reset after this many unanswered: a vanished
/// peer's slot, descriptor and buffers are freed within two minutes.
const KEEPALIVE_PROBES: u32 = 6;
/// How long a failed accept waits before it is armed again.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
/// How long shutting down waits for connections to drain.
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// Answer buffers of forwarded batches kept for the next forwards.
const SPARE_ANSWERS_MAX: usize = 64;
/// Bit that marks a listener's token (connection tokens stay below it).
const LISTENER_TOKEN: u64 = 1 << 55;
/// Generations are 23 bits, so a connection token stays below the listener bit.
const GENERATION_MASK: u32 = (1 << 23) - 1;

/// A forwarded batch back from its owners.
#[derive(Debug)]
struct Forwarded {
    token: u64,
    /// The connection's serial: the token's 23-bit generation could come
    /// round again while an owner shard sits on a batch.
    serial: u64,
    forwarder: Forwarder,
    answers: Vec<u8>,
    /// Frames forwarded, or `u64::MAX` if an owner could not be reached.
    count: u64,
}

/// Everything the loop owns but the ring (so the ring's callback can borrow it).
#[derive(Debug)]
struct State {
    shard: Rc<Shard>,
    mesh: Rc<MeshSenders>,
    doorbell: Rc<Doorbell>,
    listeners: Vec<Listener>,
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    generation: u32,
    /// Connections admitted so far; each gets the next as its serial.
    admitted: u64,
    /// Connections to look at after this poll (slot indices; may repeat).
    touched: Vec<u32>,
    /// Connections whose answers wait for the log, looked at again once it
    /// moves.
    waiting: Vec<u32>,
    /// The durable record (and whether the log had failed) when `waiting` was
    /// last looked at.
    seen: (u64, bool),
    accepted: Vec<OwnedFd>,
    forwarded: Rc<RefCell<Vec<Forwarded>>>,
    /// The other half of `forwarded`: swapped with it each turn, so neither
    /// list is made anew.
    returned: Vec<Forwarded>,
    spare_answers: Vec<Vec<u8>>,
    /// Most bytes a connection may hold unanswered.
    buffered_max: usize,
    /// The engine journaled changes this turn: the log writer must look.
    journaled: bool,
}

/// Serves the shard's connections on `listeners` until the shard stops.
pub async fn run(shard: Rc<Shard>, mesh: Rc<MeshSenders>, listeners: Vec<Listener>, mut ring: Ring) {
    let doorbell = Rc::new(Doorbell::default());
    if let Err(error) = ring.spawn_wakeup(doorbell.clone()) {
        shard.fail(format!("cannot set up the ring's wake-up: {error}"));
        return;
    }
    if let Some(commit) = &shard.commit {
        commit.notify(doorbell.clone());
    }
    let buffered_max = shard.read_buffer_bytes;
    let shard_id = shard.id;
    let spin = shard.spin;
    // The watchdog sees the loop's turns from here on (and nudges the thread
    // should they stop, see `crate::watchdog`).
    let metrics = shard.metrics.clone();
    let watch = &metrics.shards[usize::from(shard.id)].watch;
    let watching = Watching::begin(watch);
    let mut state = State {
        shard,
        mesh,
        doorbell: doorbell.clone(),
        listeners,
        conns: Vec::new(),
        free: Vec::new(),
        generation: 0,
        admitted: 0,
        touched: Vec::new(),
        waiting: Vec::new(),
        seen: (0, false),
        accepted: Vec::new(),
        forwarded: Rc::new(RefCell::new(Vec::new())),
        returned: Vec::new(),
        spare_answers: Vec::new(),
        buffered_max,
        journaled: false,
    };
    let mut busy_at = Instant::now();
    let mut next_breath = Instant::now() + BREATHE_EVERY;
    let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
    let mut draining_since: Option<Instant> = None;
    // When the last turn ended; `None` after a park (a wait, not a stall).
    let mut last_turn: Option<Instant> = None;
    // When the last turn ended, parks or not: the time from there to the
    // next turn's start is between turns (busy or idle, see the counters).
    let mut turn_ended: Option<Instant> = None;
    loop {
        watch.beat();
        let turn_start = Instant::now();
        if let Some(ended) = turn_ended {
            state.shard.counters.note_between_turns(turn_start.duration_since(ended));
        }
        let worked = match state.turn(&mut ring) {
            Ok(worked) => worked,
            Err(error) => {
                state.shard.fail(format!("the socket ring failed: {error}"));
                break;
            }
        };
        let now = Instant::now();
        if let Some(last) = last_turn {
            state.shard.counters.note_turn_gap(now.duration_since(last));
        }
        // Sends submitted count as work even when nothing was reaped.
        let busy = worked || ring.last_submitted() > 0;
        state.shard.counters.note_turn(now.duration_since(turn_start), busy);
        last_turn = Some(now);
        turn_ended = Some(now);
        // Answers waiting for the log count as work: the log's write and
        // sync are seen only while glommio polls, and parking would leave
        // them to a wake-up.
        if worked || state.waits_for_log() {
            busy_at = now;
        }
        if now >= next_sweep {
            state.sweep(now);
            next_sweep = now + SWEEP_INTERVAL;
        }
        if state.shard.is_stopping() {
            let since = *draining_since.get_or_insert_with(|| {
                state.begin_shutdown(&mut ring);
                now
            });
            if state.conns.iter().all(Option::is_none) || now.duration_since(since) >= DRAIN_MAX {
                break;
            }
        }
        if now.duration_since(busy_at) >= spin && ring.prepare_park().unwrap_or(false) {
            let park = park_for(now, next_sweep, &state.listeners);
            watch.parked_until(now + park);
            // Not on the doorbell alone: see `Ring::park`.
            ring.park(&doorbell, now + park).await;
            watch.unparked();
            ring.unpark();
            last_turn = None;
        } else if !worked || now >= next_breath || state.waits_for_log() {
            // A timer that is not due yet takes the loop off the run queue,
            // so glommio polls its rings (spinning, see `--spin-us`) and
            // comes back when the timer fires. While answers wait for the
            // log this happens every turn: the log writer's write and sync
            // are submitted and seen only when glommio polls.
            glommio::timer::sleep(BREATH).await;
            next_breath = Instant::now() + BREATHE_EVERY;
        } else {
            futures_lite::future::yield_now().await;
        }
    }
    // The ring first: its drop submits what the last turn queued and cancels
    // and reaps everything in flight, while the sockets those entries name are
    // still open. Closed first, a number could be reused by another thread's
    // new socket, and a queued send would go to it. The watch ends before it:
    // that drop may wait for its cancels (up to 2 s), not a loop asleep.
    drop(watching);
    let leaked = ring.close();
    if leaked > 0 {
        crate::log!(
            "hongbao-server: shard {}: {leaked} socket operations did not end within the ring's wait; \
             their buffers are left allocated rather than freed under the kernel",
            shard_id
        );
    }
    drop(state);
}

/// How long a parked loop may sleep: until the next sweep, at most
/// [`PARK_MAX`], and no later than a listener waiting to be armed again
/// (after EMFILE, say): its backlog fills while the loop sleeps.
fn park_for(now: Instant, next_sweep: Instant, listeners: &[Listener]) -> Duration {
    let retry = listeners.iter().filter(|l| !l.armed).filter_map(|l| l.retry_at).min();
    let until = retry.map_or(next_sweep, |at| at.min(next_sweep));
    PARK_MAX.min(until.saturating_duration_since(now))
}

/// The watchdog watches the loop while this lives (and not after, however
/// the loop ends).
struct Watching<'a>(&'a crate::watchdog::Watch);

impl<'a> Watching<'a> {
    fn begin(watch: &'a crate::watchdog::Watch) -> Watching<'a> {
        watch.begin();
        Watching(watch)
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

impl State {
    /// One loop: reap the ring, then bring every connection it touched up to
    /// date. Returns whether anything happened.
    fn turn(&mut self, ring: &mut Ring) -> std::io::Result<bool> {
        let reaped = ring.poll(|completion| self.on_completion(completion))?;
        let mut worked = reaped > 0;
        // Taken and put back, not replaced: the lists keep their memory.
        let mut accepted = std::mem::take(&mut self.accepted);
        for fd in accepted.drain(..) {
            self.admit(ring, fd);
        }
        self.accepted = accepted;
        let log = (self.durable(), self.shard.refuses_changes());
        if log != self.seen {
            self.seen = log;
            worked |= !self.waiting.is_empty();
            for slot in self.waiting.drain(..) {
                if let Some(conn) = self.conns[slot as usize].as_mut() {
                    conn.waiting = false;
                    self.touched.push(slot);
                }
            }
        }
        let mut returned = std::mem::take(&mut self.returned);
        std::mem::swap(&mut returned, &mut *self.forwarded.borrow_mut());
        worked |= !returned.is_empty();
        for batch in returned.drain(..) {
            self.on_forwarded(batch);
        }
        self.returned = returned;
        let mut touched = std::mem::take(&mut self.touched);
        for slot in touched.drain(..) {
            self.service(ring, slot as usize);
        }
        self.touched = touched;
        self.arm_listeners(ring);
        if std::mem::take(&mut self.journaled) {
            if let Some(commit) = &self.shard.commit {
                commit.poke();
            }
        }
        Ok(worked)
    }

    /// Whether answers wait for the log (or changes were just journaled).
    fn waits_for_log(&self) -> bool {
        self.shard.commit.is_some() && !self.waiting.is_empty()
    }

    /// The last durable log record (everything, without a log).
    fn durable(&self) -> u64 {
        self.shard.commit.as_ref().map_or(u64::MAX, |c| c.durable())
    }

    fn slot_of(&self, token: u64) -> Option<usize> {
        let slot = (token & 0xffff_ffff) as usize;
        match self.conns.get(slot) {
            Some(Some(conn)) if conn.token == token => Some(slot),
            _ => None,
        }
    }

    fn on_completion(&mut self, completion: Completion<'_>) {
        match completion {
            Completion::Received { token, data, armed } => {
                let Some(slot) = self.slot_of(token) else { return };
                add(&self.shard.counters.bytes_in, data.len() as u64);
                let durable = self.durable();
                let conn = self.conns[slot].as_mut().expect("slot_of found it");
                conn.active = true;
                if !armed {
                    conn.receiving = false;
                    conn.cancelling = false;
                }
                if conn.life == Life::Open {
                    let mut data = data;
                    if !conn.input.is_empty() && conn.can_answer(durable) {
                        // A frame cut by the last receive: copy only what
                        // completes it and answer it, so that the rest of
                        // this receive can be answered in place.
                        data = complete_partial_frame(conn, data);
                        if bytes_to_complete(&conn.input) == 0 {
                            self.journaled |= answer(&self.shard, conn, None);
                        }
                    }
                    if conn.life != Life::Open {
                        // That frame closes the connection: nothing after it counts.
                    } else if conn.input.is_empty() && conn.can_answer(durable) {
                        // The common case: answer straight from the ring's buffer.
                        self.journaled |= answer(&self.shard, conn, Some(data));
                    } else {
                        conn.input.extend_from_slice(data);
                        if bytes_to_complete(&conn.input) == 0 {
                            // Whole frames wait for the server, not for the
                            // client: no frame clock runs.
                            conn.partial_since = None;
                        }
                    }
                }
                self.touched.push(slot as u32);
            }
            Completion::ReceiveEnded { token, error } => {
                let Some(slot) = self.slot_of(token) else { return };
                let conn = self.conns[slot].as_mut().expect("slot_of found it");
                conn.receiving = false;
                conn.cancelling = false;
                match error.and_then(|e| e.raw_os_error()) {
                    // End of stream: answer what came, then close.
                    None => {
                        conn.peer_done = true;
                        if conn.life == Life::Open {
                            conn.life = Life::Draining;
                        }
                    }
                    // The pool ran dry or we cancelled: re-armed (or not) below.
                    Some(libc::ENOBUFS | libc::ECANCELED) => {}
                    Some(_) => conn.life = Life::Closing,
                }
                self.touched.push(slot as u32);
            }
            Completion::Sent { token, buffer, from, result } => {
                let Some(slot) = self.slot_of(token) else { return };
                let conn = self.conns[slot].as_mut().expect("slot_of found it");
                match result {
                    Ok(n) if from + n < buffer.len() && n > 0 => {
                        // A short send: the rest goes again.
                        add(&self.shard.counters.bytes_out, n as u64);
                        conn.resend = Some((buffer, from + n));
                    }
                    Ok(n) => {
                        add(&self.shard.counters.bytes_out, n as u64);
                        let short = from + n < buffer.len();
                        if let Some((_, made)) = conn.send_started {
                            // Every request these answers answer, by opcode,
                            // from its batch's first answer to the send.
                            self.shard.counters.latency.record_answers(&buffer, made.elapsed());
                        }
                        conn.sent(buffer);
                        if short {
                            conn.life = Life::Closing;
                        }
                    }
                    Err(_) => {
                        conn.sent(buffer);
                        conn.life = Life::Closing;
                    }
                }
                self.touched.push(slot as u32);
            }
            Completion::Accepted { token, fd, armed } => {
                if !armed {
                    self.listener(token).armed = false;
                }
                self.accepted.push(fd);
            }
            Completion::AcceptEnded { token, error } => {
                let stopping = self.shard.is_stopping();
                let listener = self.listener(token);
                listener.armed = false;
                if error.raw_os_error() != Some(libc::ECANCELED) {
                    // EMFILE and the like: the listener is fine, the host is not.
                    let now = Instant::now();
                    if let Some(line) = listener.accept_failed(now, &error) {
                        crate::log!("hongbao-server: {line}");
                    }
                    // (Not while stopping: it is never armed again, and a
                    // retry still due would keep every park at zero.)
                    listener.retry_at = (!stopping).then_some(now + ACCEPT_RETRY);
                } else if !stopping {
                    listener.retry_at = Some(Instant::now());
                }
            }
        }
    }

    fn listener(&mut self, token: u64) -> &mut Listener {
        &mut self.listeners[(token & !LISTENER_TOKEN) as usize]
    }

    fn arm_listeners(&mut self, ring: &mut Ring) {
        if self.shard.is_stopping() {
            return;
        }
        let now = Instant::now();
        for (i, listener) in self.listeners.iter_mut().enumerate() {
            if !listener.armed && listener.retry_at.is_none_or(|at| at <= now) {
                ring.accept(listener.fd.as_raw_fd(), LISTENER_TOKEN | i as u64);
                listener.armed = true;
                listener.retry_at = None;
            }
        }
    }

    /// A new connection: within the limits it gets a slot and a receive.
    fn admit(&mut self, ring: &mut Ring, fd: OwnedFd) {
        let source = socket::peer_addr(fd.as_raw_fd()).ok().map(|a| source_of(a.ip()));
        if self.shard.is_stopping() || over_limit(&self.shard, source) {
            add(&self.shard.counters.connections_refused, 1);
            refuse(fd);
            return;
        }
        let _ = socket::set_nodelay(fd.as_raw_fd());
        // Idle connections are never timed out (PROTOCOL.md), so only the
        // kernel can tell a peer that is gone from one that is quiet.
        let _ = socket::set_keepalive(
            fd.as_raw_fd(),
            KEEPALIVE_IDLE_SECS,
            KEEPALIVE_INTERVAL_SECS,
            KEEPALIVE_PROBES,
        );
        // A multishot receive takes whatever the socket holds, even past the
        // connection's buffered-bytes limit (it is cancelled only after);
        // a receive buffer of the same size bounds that overshoot, so a
        // connection holds at most twice its limit.
        let _ = socket::set_receive_buffer(fd.as_raw_fd(), self.buffered_max);
        let slot = match self.free.pop() {
            Some(slot) => slot as usize,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        self.generation = (self.generation + 1) & GENERATION_MASK;
        let token = (u64::from(self.generation) << 32) | slot as u64;
        let shard = &self.shard;
        let mut conn = Conn::new(
            fd,
            token,
            source,
            Forwarder::new(shard.shard_count),
            !shard.auth.required(),
            Instant::now() + shard.auth_timeout,
        );
        conn.in_flight_max = shard.max_in_flight;
        conn.out_max = super::frames::out_max(shard);
        self.admitted += 1;
        conn.serial = self.admitted;
        ring.receive(conn.fd.as_raw_fd(), token);
        conn.receiving = true;
        add(&shard.counters.connections, 1);
        if let Some(ip) = source {
            count_source(shard, ip);
        }
        self.conns[slot] = Some(conn);
    }

    fn on_forwarded(&mut self, batch: Forwarded) {
        let Forwarded { token, serial, forwarder, answers, count } = batch;
        let Some(slot) = self.slot_of(token) else { return };
        let conn = self.conns[slot].as_mut().expect("slot_of found it");
        if conn.serial != serial || conn.forwarder.is_some() {
            // The batch of a connection that is gone; its slot and token
            // came round to another. Its answers are not this one's.
            return;
        }
        conn.forwarder = Some(forwarder);
        if count == u64::MAX {
            // An owner is gone (the server stops): its frames were not done,
            // so closing acknowledges nothing wrongly.
            conn.input.clear();
            if conn.life == Life::Open {
                conn.life = Life::Draining;
            }
        } else {
            add(&self.shard.counters.forwarded_out, count);
            // Forwarded answers come back durable: they need no record here.
            conn.out.extend_from_slice(&answers);
            if conn.out_since.is_none() && !conn.out.is_empty() {
                conn.out_since = Some(Instant::now());
            }
        }
        if self.spare_answers.len() < SPARE_ANSWERS_MAX {
            self.spare_answers.push(super::buffers::recycle(answers));
        }
        self.touched.push(slot as u32);
    }

    /// Brings one connection up to date: sends what may go, answers what is
    /// buffered, forwards, arms or cancels its receive, closes it when done.
    fn service(&mut self, ring: &mut Ring, slot: usize) {
        let durable = self.durable();
        let failed = self.shard.refuses_changes();
        let Some(conn) = self.conns[slot].as_mut() else { return };
        if failed && conn.out_need > durable {
            // These answers acknowledge changes the log will never hold.
            conn.life = Life::Closing;
        }
        send(ring, conn, durable);
        if !conn.input.is_empty() && conn.can_answer(durable) {
            self.journaled |= answer(&self.shard, conn, None);
        }
        if conn.forwarder.as_ref().is_some_and(|f| !f.is_empty()) {
            let forwarder = conn.forwarder.take().expect("checked above");
            let answers = self.spare_answers.pop().unwrap_or_default();
            let owner = (conn.token, conn.serial);
            spawn_forward(owner, forwarder, answers, &self.mesh, &self.forwarded, &self.doorbell);
        }
        send(ring, conn, durable);
        if conn.drained() && !conn.peer_done {
            // All sent; the peer may still be sending. Shut our side (it
            // reads the end after the last answer) and drain its bytes.
            socket::shutdown_write(conn.fd.as_raw_fd());
            conn.life = Life::Lingering;
            conn.linger_since = Some(Instant::now());
        }
        let wanted = conn.wants_receive(self.buffered_max);
        if wanted && !conn.receiving {
            ring.receive(conn.fd.as_raw_fd(), conn.token);
            conn.receiving = true;
        } else if !wanted && conn.receiving && !conn.cancelling {
            ring.cancel_receive(conn.token);
            conn.cancelling = true;
        }
        if conn.life == Life::Closing && !conn.shut {
            // Ends a send the client does not read and the receive at once.
            socket::shutdown(conn.fd.as_raw_fd());
            conn.shut = true;
        }
        if conn.finished() {
            self.close(slot);
        } else if conn.out_need > durable && !conn.waiting {
            conn.waiting = true;
            self.waiting.push(slot as u32);
        }
    }

    fn close(&mut self, slot: usize) {
        let conn = self.conns[slot].take().expect("closing a live connection");
        self.free.push(slot as u32);
        let counters = &self.shard.counters;
        counters.connections.set(counters.connections.get() - 1);
        if let Some(ip) = conn.source {
            release_source(&self.shard, ip);
        }
        drop(conn); // closes the socket
    }

    /// Cuts off connections past a deadline: not authenticated in time or a
    /// frame started and not finished (told `timeout`), a send the client
    /// does not read, or a lingering close the client does not finish. And
    /// connections idle since the last sweep give back their buffers' memory.
    fn sweep(&mut self, now: Instant) {
        let frame_timeout = self.shard.frame_timeout;
        let mut buffer_bytes = 0;
        for (slot, conn) in self.conns.iter_mut().enumerate() {
            let Some(conn) = conn else { continue };
            conn.sweep_idle();
            buffer_bytes += conn.buffer_bytes() as u64;
            let late_auth = !conn.authenticated && now >= conn.auth_deadline;
            let late_frame = conn.partial_since.is_some_and(|t| now.duration_since(t) >= frame_timeout);
            let late_send = conn.send_started.is_some_and(|(t, _)| now.duration_since(t) >= frame_timeout);
            let late_close = conn.linger_since.is_some_and(|t| now.duration_since(t) >= LINGER_MAX);
            if conn.life != Life::Closing && (late_send || late_close) {
                // It does not read what it is sent: nothing more can reach it.
                conn.life = Life::Closing;
                self.touched.push(slot as u32);
            } else if conn.life == Life::Open && conn.forwarder.is_some() && (late_auth || late_frame) {
                // (With a forwarded batch out, at the next sweep: its answers
                // come before the timeout, not after where none would read them.)
                // Say why (unasked: opcode 0, request id 0), then close as
                // after a frame that closes the connection.
                conn.input.clear();
                conn.partial_since = None;
                write_response(&mut conn.out, 0, 0, Status::Timeout, &[]);
                conn.out_since.get_or_insert(now);
                conn.life = Life::Draining;
                self.touched.push(slot as u32);
            }
        }
        self.shard.counters.connection_buffer_bytes.set(buffer_bytes);
    }

    /// The shard stops: no more accepts; every connection sends what it has
    /// answered and closes.
    fn begin_shutdown(&mut self, ring: &mut Ring) {
        for (i, listener) in self.listeners.iter_mut().enumerate() {
            if listener.armed {
                ring.cancel_accept(LISTENER_TOKEN | i as u64);
            }
            // Never armed again: a retry still due would keep every park
            // of the drain at zero.
            listener.retry_at = None;
        }
        for (slot, conn) in self.conns.iter_mut().enumerate() {
            let Some(conn) = conn else { continue };
            conn.input.clear();
            if conn.life == Life::Open {
                conn.life = Life::Draining;
            }
            self.touched.push(slot as u32);
        }
    }
}

/// Answers the whole frames of `data` (or, with `None`, of the connection's
/// buffered input); the answers wait for the last log record they show (see
/// [`crate::engine::Engine::take_depends`]). Returns whether the engine
/// journaled changes.
fn answer(shard: &Shard, conn: &mut Conn, data: Option<&[u8]>) -> bool {
    let since = shard.last_change();
    let ended = shard.counters.authentications_ended.get();
    let frames_max = conn.frames_allowed();
    let forwarder = conn.forwarder.as_mut().expect("can_answer: no batch is out");
    let answered = match data {
        Some(data) => {
            let answered =
                answer_buffer(shard, data, forwarder, &mut conn.out, &mut conn.authenticated, frames_max);
            conn.input.extend_from_slice(&data[answered.consumed..]);
            answered
        }
        None => {
            let answered = answer_buffer(
                shard,
                &conn.input,
                forwarder,
                &mut conn.out,
                &mut conn.authenticated,
                frames_max,
            );
            conn.input.drain(..answered.consumed);
            answered
        }
    };
    conn.unsent += answered.frames;
    let need = shard.take_depends();
    let now = Instant::now();
    if shard.counters.authentications_ended.get() != ended {
        // A HELLO with a wrong token ended this connection's authentication
        // without closing it (PROTOCOL.md 3.4): it has a whole --auth-timeout
        // from then to present the right one, not what was left of the first.
        conn.auth_deadline = now + shard.auth_timeout;
    }
    conn.answered(need, answered.next, now);
    shard.last_change() != since
}

/// Moves from `data` into the connection's buffered input the bytes that
/// complete the partial frame it holds (or as many as there are); returns
/// the rest of `data`.
fn complete_partial_frame<'d>(conn: &mut Conn, mut data: &'d [u8]) -> &'d [u8] {
    loop {
        let need = bytes_to_complete(&conn.input);
        if need == 0 || data.is_empty() {
            return data;
        }
        let take = need.min(data.len());
        conn.input.extend_from_slice(&data[..take]);
        data = &data[take..];
    }
}

/// Starts the send of `conn`'s answers if they may go.
fn send(ring: &mut Ring, conn: &mut Conn, durable: u64) {
    if let Some((buffer, from)) = conn.resend.take() {
        ring.send(conn.fd.as_raw_fd(), conn.token, buffer, from);
        return;
    }
    if conn.can_send(durable) {
        let buffer = conn.take_out(Instant::now());
        ring.send(conn.fd.as_raw_fd(), conn.token, buffer, 0);
    }
}

/// Sends a connection's frames for other shards on a task of their own; the
/// answers come back to the loop through `done`.
fn spawn_forward(
    (token, serial): (u64, u64),
    mut forwarder: Forwarder,
    mut answers: Vec<u8>,
    mesh: &Rc<MeshSenders>,
    done: &Rc<RefCell<Vec<Forwarded>>>,
    doorbell: &Rc<Doorbell>,
) {
    let (mesh, done, doorbell) = (mesh.clone(), done.clone(), doorbell.clone());
    glommio::spawn_local(async move {
        let count = forwarder.flush(&mesh, &mut answers).await;
        done.borrow_mut().push(Forwarded { token, serial, forwarder, answers, count });
        doorbell.ring();
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_waiting_to_be_armed_again_shortens_the_park() {
        let now = Instant::now();
        let sweep = now + Duration::from_millis(80);
        let mut listeners = vec![Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap()];
        assert_eq!(park_for(now, sweep, &listeners), Duration::from_millis(80));
        assert_eq!(park_for(now, now + Duration::from_secs(5), &listeners), PARK_MAX);
        listeners[0].retry_at = Some(now + ACCEPT_RETRY);
        assert_eq!(park_for(now, sweep, &listeners), ACCEPT_RETRY, "wakes for the retry");
        listeners[0].armed = true; // Armed again: its retry time is history.
        assert_eq!(park_for(now, sweep, &listeners), Duration::from_millis(80));
        listeners[0].armed = false;
        listeners[0].retry_at = Some(now - Duration::from_millis(1));
        assert_eq!(park_for(now, sweep, &listeners), Duration::ZERO, "overdue: no park");
    }
}
