//! A worker's connections, all driven by one loop over one [`Ring`]: every
//! turn reaps the answers that arrived on any connection, then tops every
//! connection up with requests and sends each connection's batch.
//!
//! * **Closed loop:** a connection keeps `depth` requests in flight; latency
//!   counts from when a request was written.
//! * **Open loop:** each connection sends one request every `interval`, the
//!   connections' schedules spread evenly over one interval; latency counts
//!   from when the request was *due*, as wrk2 does, so a server that stalls is
//!   charged for every request that waited behind the stall (coordinated
//!   omission), and the load generator's own lag shows too. A connection with
//!   `depth` requests in flight sends nothing more until answers come back,
//!   and those requests are late. Requests that fell due before the end but
//!   are still waiting then are sent after it, with their due times, for up
//!   to [`AFTER_END`]; a server so far behind that some are still unsent
//!   then has them counted as lapsed (reported apart, never sent), so an
//!   overloaded run ends with a report instead of failing.
//!
//! A request is measured when it *started* (was due, or was written) inside
//! the measured period, however late its answer comes: a server that stalls
//! at the end of a run cannot drop its slowest answers out of the figures.
//!
//! The loop never parks: a load generator's core is there to generate load,
//! and polling keeps the schedule to within a turn. At the end each
//! connection half-closes once its last batch is out; the server answers
//! everything it read and closes, which tells the loop every answer is in.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hongbao_client::answer;
use hongbao_protocol::codec::bytes_to_complete;
use hongbao_protocol::decode_frame;
use hongbao_protocol::hot_path::EnvelopeUserOp;
use hongbao_protocol::hot_path_client::{
    read_envelope_user_response, write_envelope_user_request, EnvelopeUserAnswer, EnvelopeUserResponse,
};
use hongbao_protocol::response::Response;
use hongbao_protocol::{Opcode, Status};
use hongbao_uring::{Completion, Ring, RingConfig};

use crate::results::{slot_of, Recorder, Tally};
use crate::stalls::Stalls;
use crate::workload::{ShardWork, Tag};

/// Bits of a request id that name its in-flight slot.
const SLOT_BITS: u32 = 20;
/// How long after the end of the run the open loop's backlog (requests due
/// before the end, still unsent) may go on being sent; and then, how long
/// the server has to answer everything sent.
pub const AFTER_END: Duration = Duration::from_secs(10);
/// Open loop: a batch this large goes out without waiting for its window.
const BATCH_BYTES_MAX: usize = 64 << 10;

/// When a run starts, starts measuring, and stops.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Load starts.
    pub start: Instant,
    /// Answers from here on are measured.
    pub measure_from: Instant,
    /// The measured period ends: no request is sent after this, but the
    /// open loop's backlog of requests due before it (for up to
    /// [`DriveSettings::after_end`]).
    pub stop_at: Instant,
}

/// How the connections are driven.
#[derive(Clone, Debug)]
pub struct DriveSettings {
    /// Requests in flight at most, per connection.
    pub depth: usize,
    /// Open loop: time between one connection's requests, in picoseconds
    /// (whole nanoseconds would skew the rate: at 4.7M/s over two
    /// connections 425.5 ns becomes 426, 0.1% fewer requests). `None`:
    /// closed loop.
    pub interval_ps: Option<u64>,
    /// Open loop: how long the first request due waits for others to share
    /// its write.
    pub batch: Duration,
    /// Open loop: this worker's place among the workers (index, count), so
    /// that every connection of the run starts its schedule at its own offset.
    pub phase: (usize, usize),
    /// Run timing.
    pub timing: Timing,
    /// Open loop: how long after the end the backlog may still be sent
    /// (what is left then lapses, counted in [`Recorder::lapsed`]); then,
    /// for either loop, how long the last answers may take.
    pub after_end: Duration,
    /// Expiry of the envelopes created.
    pub expires_in_secs: u32,
}

/// Requests in flight on one connection, by slot, with the time each
/// started (nanoseconds since the run's start: cheaper to subtract than
/// `Instant`s, once per answer).
#[derive(Debug)]
struct InFlight {
    slots: Vec<Option<(Tag, u64, u64)>>,
    free: Vec<u32>,
    seq: u64,
}

impl InFlight {
    fn new(depth: usize) -> InFlight {
        InFlight { slots: vec![None; depth], free: (0..depth as u32).rev().collect(), seq: 1 }
    }

    fn insert(&mut self, tag: Tag, start: u64) -> u64 {
        let slot = self.free.pop().expect("the caller checked for a free slot");
        let id = (self.seq << SLOT_BITS) | u64::from(slot);
        self.seq += 1;
        self.slots[slot as usize] = Some((tag, start, id));
        id
    }

    fn remove(&mut self, id: u64) -> Option<(Tag, u64)> {
        let slot = (id & ((1 << SLOT_BITS) - 1)) as usize;
        match self.slots.get(slot) {
            Some(Some((_, _, held))) if *held == id => {}
            _ => return None,
        }
        let (tag, start, _) = self.slots[slot].take()?;
        self.free.push(slot as u32);
        Some((tag, start))
    }

    fn free(&self) -> usize {
        self.free.len()
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// One connection to one shard.
#[derive(Debug)]
struct Conn {
    fd: OwnedFd,
    shard: usize,
    in_flight: InFlight,
    /// Answer bytes of a frame not whole yet.
    input: Vec<u8>,
    /// Requests not sent yet.
    out: Vec<u8>,
    /// The other send buffer; `None` while the ring sends it.
    spare: Option<Vec<u8>>,
    /// Open loop: when this connection's next request is due (ns since the
    /// start): request `k` of its schedule is due at `schedule_from + k *
    /// interval`, exactly, so rounding never accumulates.
    next_due: u64,
    /// The picoseconds of `schedule_from + k * interval` below `next_due`
    /// (0..1000): carried from one request to the next, so that each step
    /// is an add and a division by a constant, not a 128-bit division.
    next_due_ps: u64,
    schedule_from: u64,
    scheduled: u64,
    /// Open loop: when the first request in `out` fell due (ns since the start).
    out_due: u64,
    /// Its multishot receive is armed.
    receiving: bool,
    /// The write side is shut: the run is over for this connection.
    half_closed: bool,
    /// The server closed: every answer that will come has come.
    done: bool,
    /// Open loop: since when (ns) requests have been due while every slot
    /// was taken; `None` while the connection keeps up.
    full_since: Option<u64>,
    /// Open loop, measured period: times the connection reached its depth
    /// with requests due, and the time it spent so.
    full_episodes: u64,
    full_ns: u64,
}

impl Conn {
    /// Open loop: whether, at `now`, requests are due that no free slot can
    /// take (`limited`). Episodes start only while `measuring`; one that
    /// started is timed to its end.
    fn note_room(&mut self, now: u64, limited: bool, measuring: bool) {
        match (limited, self.full_since) {
            (true, None) if measuring => {
                self.full_since = Some(now);
                self.full_episodes += 1;
            }
            (false, Some(since)) => {
                self.full_ns += now.saturating_sub(since);
                self.full_since = None;
            }
            _ => {}
        }
    }
}

/// What answers feed: the workloads, and the figures.
#[derive(Debug)]
struct Figures<'a> {
    works: &'a mut [ShardWork],
    tally: Tally,
    recorder: &'a mut Recorder,
    timing: Timing,
}

/// Drives every connection (`(shard, socket)`) until the run stops and every
/// answer is in. Requests come from `works[shard]`; answers are measured into
/// `recorder`.
pub async fn drive(
    connections: Vec<(usize, OwnedFd)>,
    works: &mut [ShardWork],
    recorder: &mut Recorder,
    settings: &DriveSettings,
    progress: Arc<AtomicU64>,
) -> Result<(), String> {
    assert!(settings.depth >= 1 && settings.depth < (1 << SLOT_BITS));
    let config = RingConfig { entries: ring_entries(connections.len()), ..RingConfig::default() };
    let mut ring = Ring::new(config).map_err(|e| format!("cannot set up the socket ring: {e}"))?;
    let timing = settings.timing;
    let count = connections.len();
    let mut conns: Vec<Conn> = connections
        .into_iter()
        .enumerate()
        .map(|(i, (shard, fd))| {
            ring.receive(fd.as_raw_fd(), i as u64);
            let next_due = first_due(settings.interval_ps, settings.phase, i, count);
            Conn {
                fd,
                shard,
                in_flight: InFlight::new(settings.depth),
                input: Vec::new(),
                out: Vec::with_capacity(settings.depth * 64),
                spare: Some(Vec::with_capacity(settings.depth * 64)),
                next_due,
                next_due_ps: 0,
                schedule_from: next_due,
                scheduled: 0,
                out_due: 0,
                receiving: true,
                half_closed: false,
                done: false,
                full_since: None,
                full_episodes: 0,
                full_ns: 0,
            }
        })
        .collect();
    let mut figures = Figures { works, tally: Tally::default(), recorder, timing };
    let mut failure: Option<String> = None;
    let batch_ns = settings.interval_ps.map_or(0, |_| settings.batch.as_nanos() as u64);
    let stop_ns = since(timing.start, timing.stop_at);
    let from_ns = since(timing.start, timing.measure_from);
    let backlog_until = timing.stop_at + settings.after_end;
    let open_loop = settings.interval_ps.is_some();
    let mut stalls = Stalls::default();
    // When the last request went out after the end: answers are awaited
    // for `after_end` from then.
    let mut sent_all_at: Option<Instant> = None;
    // Whether the last turn found answers to read or requests to send.
    let mut worked = false;
    loop {
        let now = Instant::now();
        let running = now < timing.stop_at;
        let now_ns = since(timing.start, now);
        let measuring = running && now >= timing.measure_from;
        if measuring {
            stalls.observe(now_ns, worked);
        } else if !running {
            stalls.close(stop_ns, worked);
        }
        if !running && open_loop && now >= backlog_until {
            // The server fell so far behind that the backlog outlasted its
            // grace: what is left of it is never sent, and is counted.
            for conn in &mut conns {
                figures.recorder.lapsed += lapse(conn, settings, from_ns, stop_ns);
            }
        }
        for (i, conn) in conns.iter_mut().enumerate() {
            // Open loop: the requests due before the end are all sent, if late.
            let sending = running || (open_loop && conn.next_due < stop_ns);
            if sending {
                fill(conn, &mut figures.works[conn.shard], settings, now_ns, measuring);
            }
            if conn.spare.is_some() && !conn.out.is_empty() && ripe(conn, now_ns, batch_ns, running) {
                let mut batch = conn.spare.take().expect("checked");
                std::mem::swap(&mut batch, &mut conn.out);
                ring.send(conn.fd.as_raw_fd(), i as u64, batch, 0);
            } else if !sending && !conn.half_closed && conn.spare.is_some() {
                // Everything is sent: the server answers what it read, then closes.
                hongbao_uring::socket::shutdown_write(conn.fd.as_raw_fd());
                conn.half_closed = true;
            }
        }
        if !running && conns.iter().all(|c| c.in_flight.len() == 0 && c.out.is_empty() && c.spare.is_some()) {
            // Nothing is in flight anywhere and the workload gave nothing to
            // send: no answer will come to give it more, so what is left of
            // the schedule lapses.
            for conn in &mut conns {
                figures.recorder.lapsed += lapse(conn, settings, from_ns, stop_ns);
            }
        }
        if !running && sent_all_at.is_none() && conns.iter().all(|c| !open_loop || c.next_due >= stop_ns) {
            sent_all_at = Some(now);
        }
        let mut answered = 0u64;
        let handled = ring
            .poll(|completion| match completion {
                Completion::Received { token, data, armed } => {
                    let conn = &mut conns[token as usize];
                    match read_answers(conn, data, &mut figures) {
                        Ok(n) => answered += n,
                        Err(why) => {
                            failure.get_or_insert(why);
                        }
                    }
                    // Re-armed below, outside the callback.
                    conn.receiving &= armed;
                }
                Completion::ReceiveEnded { token, error } => {
                    let conn = &mut conns[token as usize];
                    conn.receiving = false;
                    match error {
                        // Before this side shut its writes, an end of stream
                        // is the server going away: the run fails now, not
                        // when its clock runs out.
                        None if !conn.half_closed => {
                            conn.done = true;
                            failure.get_or_insert(format!(
                                "the server closed the connection with {} requests unanswered",
                                conn.in_flight.len()
                            ));
                        }
                        None => conn.done = true,
                        Some(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                        Some(e) => {
                            conn.done = true;
                            failure.get_or_insert(format!("read: {e}"));
                        }
                    }
                }
                Completion::Sent { token, mut buffer, result, .. } => {
                    let conn = &mut conns[token as usize];
                    match result {
                        Ok(n) if n == buffer.len() => {}
                        Ok(n) => {
                            failure.get_or_insert(format!("short write: {n} of {} bytes", buffer.len()));
                        }
                        Err(e) => {
                            failure.get_or_insert(format!("write: {e}"));
                        }
                    }
                    buffer.clear();
                    conn.spare = Some(buffer);
                }
                Completion::Accepted { .. } | Completion::AcceptEnded { .. } => {}
            })
            .map_err(|e| format!("the socket ring failed: {e}"))?;
        worked = handled > 0 || ring.last_submitted() > 0;
        if answered > 0 {
            progress.fetch_add(answered, Ordering::Relaxed);
        }
        if let Some(why) = failure {
            return Err(why);
        }
        for (i, conn) in conns.iter_mut().enumerate() {
            if !conn.done && !conn.receiving {
                // The pool ran dry or the kernel ended the receive: read on.
                ring.receive(conn.fd.as_raw_fd(), i as u64);
                conn.receiving = true;
            }
        }
        if !running {
            if conns.iter().all(|c| c.done) {
                break;
            }
            if sent_all_at.is_some_and(|at| now.duration_since(at) > settings.after_end) {
                let waiting: usize = conns.iter().map(|c| c.in_flight.len()).sum();
                return Err(format!(
                    "{waiting} requests still unanswered {:?} after the last was sent",
                    settings.after_end
                ));
            }
        }
        futures_lite::future::yield_now().await;
    }
    figures.tally.fold_into(figures.recorder);
    figures.recorder.stalls.merge(&stalls);
    for conn in &mut conns {
        conn.note_room(stop_ns, false, false);
        figures.recorder.depth_limited.episodes += conn.full_episodes;
        figures.recorder.depth_limited.total_ns += conn.full_ns;
    }
    let lost: usize = conns.iter().map(|c| c.in_flight.len()).sum();
    if lost > 0 {
        return Err(format!("the server closed with {lost} requests unanswered"));
    }
    Ok(())
}

/// Open loop: when connection `i` of `count` on this worker sends its first
/// request (ns since the start). The run's connections take evenly spaced
/// offsets within one interval, so that together they send at the rate's
/// steady pace instead of all at the same instants. Closed loop: 0.
fn first_due(interval_ps: Option<u64>, (worker, workers): (usize, usize), i: usize, count: usize) -> u64 {
    let Some(interval_ps) = interval_ps else { return 0 };
    let all = (workers.max(1) * count.max(1)) as u128;
    let place = (worker * count + i) as u128;
    (u128::from(interval_ps) * place / all / 1_000) as u64
}

/// Open loop: ends the connection's schedule at the end of the run. Returns
/// how many requests due inside the measured period (`from_ns..stop_ns`)
/// it will now never send. Closed loop: 0.
fn lapse(conn: &mut Conn, settings: &DriveSettings, from_ns: u64, stop_ns: u64) -> u64 {
    let Some(interval_ps) = settings.interval_ps else { return 0 };
    if conn.next_due >= stop_ns {
        return 0;
    }
    // Request k is due at schedule_from + floor(k * interval / 1000) ns:
    // those due before `t` are the first ceil((t - schedule_from) * 1000 /
    // interval).
    let due_before = |t: u64| {
        let span = u128::from(t.saturating_sub(conn.schedule_from)) * 1_000;
        span.div_ceil(u128::from(interval_ps.max(1))) as u64
    };
    let unsent = due_before(stop_ns).saturating_sub(conn.scheduled.max(due_before(from_ns)));
    conn.next_due = stop_ns;
    unsent
}

/// Whether the requests in `conn.out` should go now. Open loop: the first
/// one due waits up to `batch_ns` for company; a full batch, and anything at
/// the end of the run, goes at once. Closed loop (`batch_ns` 0): always.
fn ripe(conn: &Conn, now_ns: u64, batch_ns: u64, running: bool) -> bool {
    now_ns >= conn.out_due.saturating_add(batch_ns) || conn.out.len() >= BATCH_BYTES_MAX || !running
}

/// Queues as many requests as the connection may send now: up to its free
/// slots (closed loop), or those due by now (open loop). `measuring`: `now`
/// is inside the measured period.
fn fill(conn: &mut Conn, work: &mut ShardWork, settings: &DriveSettings, now: u64, measuring: bool) {
    let mut room = conn.in_flight.free();
    let interval_ps = settings.interval_ps.map(|i| i.max(1));
    if let Some(interval_ps) = interval_ps {
        // Past the end, only what fell due before it is still to send.
        let now = now.min(since(settings.timing.start, settings.timing.stop_at).saturating_sub(1));
        if conn.next_due > now {
            conn.note_room(now, false, measuring);
            return;
        }
        let due =
            ((now - conn.next_due).saturating_mul(1_000) / interval_ps).min(usize::MAX as u64) as usize + 1;
        conn.note_room(now, due > room, measuring);
        room = room.min(due);
    }
    for _ in 0..room {
        let Some(tag) = work.next_tag() else { break };
        let start = match interval_ps {
            Some(interval_ps) => {
                let due = conn.next_due;
                conn.scheduled += 1;
                let step_ps = conn.next_due_ps + interval_ps;
                conn.next_due += step_ps / 1_000;
                conn.next_due_ps = step_ps % 1_000;
                due
            }
            None => now,
        };
        if conn.out.is_empty() {
            conn.out_due = start;
        }
        let id = conn.in_flight.insert(tag, start);
        match tag {
            // The storm's bulk, written in one copy.
            Tag::Grab { envelope, user, .. } => {
                write_envelope_user_request(&mut conn.out, EnvelopeUserOp::Grab, id, envelope, user)
            }
            Tag::Open { envelope, user, .. } => {
                write_envelope_user_request(&mut conn.out, EnvelopeUserOp::Open, id, envelope, user)
            }
            _ => tag.request(settings.expires_in_secs).encode(id, &mut conn.out),
        }
    }
}

/// Matches, measures and feeds back every whole answer in the connection's
/// buffered bytes and `data`. Returns how many there were.
fn read_answers(conn: &mut Conn, data: &[u8], figures: &mut Figures<'_>) -> Result<u64, String> {
    let now = Instant::now();
    let timing = figures.timing;
    // Requests that started in the measured period count, whenever answered;
    // the throughput over time counts answers as they arrive.
    let from_ns = since(timing.start, timing.measure_from);
    let stop_ns = since(timing.start, timing.stop_at);
    let answered_in_period = now >= timing.measure_from && now < timing.stop_at;
    let second = now.saturating_duration_since(timing.measure_from).as_secs() as usize;
    let now_ns = since(timing.start, now);
    let work = &mut figures.works[conn.shard];
    let tally = &mut figures.tally;
    let repeated_paid = &mut figures.recorder.repeated_paid;
    let mut answered = 0;
    let mut each = |bytes: &[u8], in_flight: &mut InFlight| -> Result<usize, String> {
        let mut at = 0;
        loop {
            // GRAB and OPEN answers in one pass; anything else (or a frame
            // not whole yet) through the general decoder, which judges it.
            let (request_id, decoded) = match read_envelope_user_response(&bytes[at..]) {
                Some((fast, len)) => {
                    at += len;
                    (fast.request_id, Decoded::Fast(fast))
                }
                None => {
                    let frame = match decode_frame(&bytes[at..]) {
                        Ok(Some(frame)) => frame,
                        Ok(None) => return Ok(at),
                        Err(e) => return Err(format!("bad frame from the server: {e}")),
                    };
                    at += frame.wire_len();
                    let response = Response::from_frame(&frame).map_err(|e| format!("bad response: {e}"))?;
                    (response.request_id, Decoded::General(response))
                }
            };
            let Some((tag, start)) = in_flight.remove(request_id) else {
                if let (0, Decoded::General(response)) = (request_id, &decoded) {
                    return Err(format!("the server is closing the connection: {}", response.status));
                }
                return Err(format!("answer to request id {request_id} that is not in flight"));
            };
            let latency_us = now_ns.saturating_sub(start) / 1_000;
            let measured = start >= from_ns && start < stop_ns;
            match &decoded {
                Decoded::Fast(fast) => {
                    // The storm's bulk: no decoded answer, only what the
                    // workload and the figures need.
                    let (opcode, amount_cents, order) = match fast.body {
                        EnvelopeUserAnswer::Grab(g) => (Opcode::Grab, g.amount_cents.get(), 0),
                        EnvelopeUserAnswer::Open(o) => (Opcode::Open, o.amount_cents.get(), o.order.get()),
                    };
                    if opcode != tag.opcode() {
                        return Err(format!("a {opcode} answer to a {} request", tag.opcode()));
                    }
                    if measured {
                        tally.record(slot_of(opcode), fast.status, latency_us);
                        if matches!(tag, Tag::Open { again: true, .. }) && fast.status == Status::Ok {
                            *repeated_paid += 1;
                        }
                    }
                    work.on_envelope_user(tag, fast.status, amount_cents, order);
                }
                Decoded::General(response) => {
                    // Unchecked: the workload judges the money itself and
                    // counts a broken rule as a violation, run on.
                    let answer = answer::decode_unchecked(tag.opcode(), response)
                        .map_err(|e| format!("bad {} answer: {e}", tag.opcode()))?;
                    if measured {
                        tally.record(slot_of(tag.opcode()), answer.status, latency_us);
                    }
                    work.on_answer(tag, &answer);
                }
            }
            answered += 1;
        }
    };
    let mut data = data;
    if !conn.input.is_empty() {
        // A frame cut by the last receive: copy only what completes it,
        // answer it, and read the rest of this receive in place.
        loop {
            let need = bytes_to_complete(&conn.input);
            if need == 0 || data.is_empty() {
                break;
            }
            let take = need.min(data.len());
            conn.input.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        if bytes_to_complete(&conn.input) == 0 {
            let used = each(&conn.input, &mut conn.in_flight)?;
            conn.input.drain(..used);
        }
    }
    if conn.input.is_empty() {
        let used = each(data, &mut conn.in_flight)?;
        conn.input.extend_from_slice(&data[used..]);
    } else {
        // Still waiting for that frame's end (or it was not whole after
        // all): keep everything in order behind it.
        conn.input.extend_from_slice(data);
    }
    if answered_in_period {
        figures.recorder.count_second(second, answered);
    }
    Ok(answered)
}

/// An answer as read: by the GRAB and OPEN fast path, or in general.
enum Decoded<'a> {
    Fast(EnvelopeUserResponse),
    General(Response<'a>),
}

/// Nanoseconds from `start` to `now`.
fn since(start: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(start).as_nanos() as u64
}

/// Submission entries for `connections`: a send and a receive re-arm each
/// per turn, with room to spare.
fn ring_entries(connections: usize) -> u32 {
    (connections * 4).next_power_of_two().clamp(256, 32_768) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn_with(out_len: usize, out_due: u64) -> Conn {
        let fd = std::fs::File::open("/dev/null").unwrap().into();
        Conn {
            fd,
            shard: 0,
            in_flight: InFlight::new(4),
            input: Vec::new(),
            out: vec![0; out_len],
            spare: Some(Vec::new()),
            next_due: 0,
            next_due_ps: 0,
            schedule_from: 0,
            scheduled: 0,
            out_due,
            receiving: false,
            half_closed: false,
            done: false,
            full_since: None,
            full_episodes: 0,
            full_ns: 0,
        }
    }

    #[test]
    fn open_loop_batches_wait_their_window_and_no_longer() {
        let conn = conn_with(40, 1_000);
        assert!(!ripe(&conn, 1_000, 20_000, true), "the first request just fell due");
        assert!(!ripe(&conn, 20_999, 20_000, true));
        assert!(ripe(&conn, 21_000, 20_000, true), "its window is over");
        assert!(ripe(&conn, 1_000, 20_000, false), "the run is over: send at once");
        assert!(ripe(&conn_with(BATCH_BYTES_MAX, 1_000), 1_000, 20_000, true), "a full batch goes");
        assert!(ripe(&conn, 1_000, 0, true), "closed loop: no window");
        assert!(ripe(&conn_with(40, u64::MAX), 0, 20_000, false), "no overflow past the clock");
    }

    #[test]
    fn open_loop_times_the_connection_at_its_depth_limit() {
        let mut work = ping_work();
        let settings = open_loop_every_100ns(Duration::from_secs(10));
        let mut conn = conn_with(0, 0);
        fill(&mut conn, &mut work, &settings, 250, true);
        assert_eq!(conn.in_flight.len(), 3, "three requests were due by 250 ns");
        assert_eq!(conn.full_episodes, 0);
        fill(&mut conn, &mut work, &settings, 1_000, true);
        assert_eq!(conn.in_flight.len(), 4, "one slot was left for the eight due");
        assert_eq!((conn.full_episodes, conn.full_since), (1, Some(1_000)));
        fill(&mut conn, &mut work, &settings, 1_500, true);
        assert_eq!(conn.full_episodes, 1, "the same episode goes on");
        // Every answer comes back: the backlog (next due at 400 ns) is sent.
        for slot in 0..4u64 {
            let id = conn.in_flight.slots[slot as usize].unwrap().2;
            conn.in_flight.remove(id);
        }
        fill(&mut conn, &mut work, &settings, 1_600, true);
        assert_eq!(conn.full_episodes, 1);
        assert!(conn.full_since.is_some(), "still more due (400..1600 ns) than 4 slots");
        for slot in 0..4u64 {
            let id = conn.in_flight.slots[slot as usize].unwrap().2;
            conn.in_flight.remove(id);
        }
        schedule_from(&mut conn, 5_000); // caught up: nothing due until then
        fill(&mut conn, &mut work, &settings, 2_000, true);
        assert_eq!((conn.full_since, conn.full_ns), (None, 1_000), "at the limit from 1,000 to 2,000 ns");
    }

    fn ping_work() -> ShardWork {
        use crate::args::Scenario;
        use crate::workload::WorkSettings;
        let settings = WorkSettings {
            scenario: Scenario::Ping,
            worker: 0,
            in_flight: 4,
            seed: 1,
            query_every: 64,
            retry_every: 0,
            hot_count: 1,
            hot_users: 1,
            cap_cents: 100,
            verify_sample: 0,
        };
        ShardWork::new(&settings, 0)
    }

    /// Open loop: starts the schedule over, its next request due at `due`.
    fn schedule_from(conn: &mut Conn, due: u64) {
        (conn.next_due, conn.next_due_ps, conn.schedule_from, conn.scheduled) = (due, 0, due, 0);
    }

    /// Open loop, one request per 100 ns, depth 4, the run `length` long.
    fn open_loop_every_100ns(length: Duration) -> DriveSettings {
        let start = Instant::now();
        DriveSettings {
            depth: 4,
            interval_ps: Some(100_000),
            batch: Duration::ZERO,
            phase: (0, 1),
            timing: Timing { start, measure_from: start, stop_at: start + length },
            after_end: AFTER_END,
            expires_in_secs: 5,
        }
    }

    #[test]
    fn an_answer_counts_by_when_its_request_started_not_when_it_came() {
        use hongbao_protocol::codec::write_response;
        const SEC: u64 = 1_000_000_000;
        let now = Instant::now();
        let start = now.checked_sub(Duration::from_secs(10)).expect("the clock runs 10 s or more");
        let timing = Timing {
            start,
            measure_from: start + Duration::from_secs(1),
            stop_at: start + Duration::from_secs(5),
        };
        let mut conn = conn_with(0, 0);
        let mut bytes = Vec::new();
        // Due in the warm-up, in the measured period, and after it; all
        // answered now, 5 s after the end.
        for due in [SEC / 2, 2 * SEC, 6 * SEC] {
            let id = conn.in_flight.insert(Tag::Ping, due);
            write_response(&mut bytes, Opcode::Ping as u8, id, Status::Ok, &[]);
        }
        let mut works = [ping_work()];
        let mut recorder = Recorder::default();
        let mut figures =
            Figures { works: &mut works, tally: Tally::default(), recorder: &mut recorder, timing };
        assert_eq!(read_answers(&mut conn, &bytes, &mut figures), Ok(3));
        // However long the machine took to get here, the answer was read
        // between `now` and `read`: 8 s after its due time, plus that.
        let read = Instant::now().duration_since(now).as_micros() as u64;
        figures.tally.fold_into(&mut recorder);
        let ping = &recorder.ops[&Opcode::Ping];
        assert_eq!(ping.count, 1, "only the request due in the measured period counts");
        let latency = ping.latency_us.max();
        // The histogram keeps 3 significant digits: 8,000,000 may read 8 ms off.
        assert!(
            (7_990_000..=8_010_000 + read * 1_001 / 1_000).contains(&latency),
            "8 s from its due time, late as it was: {latency} µs ({read} µs to read it)"
        );
        assert!(recorder.per_second.is_empty(), "answers after the end are not in the throughput over time");
    }

    #[test]
    fn open_loop_connections_spread_their_schedules_over_one_interval() {
        let interval = Some(1_000_000);
        let offsets: Vec<u64> =
            (0..2).flat_map(|worker| (0..2).map(move |i| first_due(interval, (worker, 2), i, 2))).collect();
        assert_eq!(offsets, [0, 250, 500, 750], "four connections on two workers");
        assert_eq!(first_due(None, (1, 2), 1, 2), 0, "closed loop starts at once");
        assert_eq!(first_due(interval, (0, 1), 0, 1), 0);
    }

    #[test]
    fn the_open_loop_schedule_keeps_fractions_of_a_nanosecond() {
        // 425.5 ns apart: 2,000 requests take 851,000 ns, not 852,000 or 850,000.
        let mut settings = open_loop_every_100ns(Duration::from_secs(10));
        settings.interval_ps = Some(425_500);
        settings.depth = 4_096;
        let mut work = ping_work();
        let mut conn = conn_with(0, 0);
        conn.in_flight = InFlight::new(4_096);
        fill(&mut conn, &mut work, &settings, 850_999, true);
        assert_eq!(conn.in_flight.len(), 2_000, "due at 0, 425, 851, ... 850,574");
        assert_eq!(conn.next_due, 851_000);
        let starts: Vec<u64> = conn.in_flight.slots.iter().flatten().map(|s| s.1).take(3).collect();
        assert_eq!(starts, [0, 425, 851]);
        // Step by step, request k is due at exactly floor(k x interval) ns.
        settings.interval_ps = Some(333_333_337);
        let mut conn = conn_with(0, 0);
        conn.in_flight = InFlight::new(4_096);
        fill(&mut conn, &mut work, &settings, 1_000_000_000, true);
        let mut starts: Vec<u64> = conn.in_flight.slots.iter().flatten().map(|s| s.1).collect();
        starts.sort_unstable();
        assert_eq!(starts.len(), 3_000, "due at 0 .. 999,666,677 ns");
        for (k, start) in starts.iter().enumerate() {
            assert_eq!(*start, (k as u128 * 333_333_337 / 1_000) as u64, "request {k}");
        }
    }

    #[test]
    fn open_loop_sends_after_the_end_only_what_fell_due_before_it() {
        let settings = open_loop_every_100ns(Duration::from_nanos(1_000));
        let mut work = ping_work();
        let mut conn = conn_with(0, 0);
        schedule_from(&mut conn, 850);
        // The run ended at 1,000 ns; the clock says 5,000.
        fill(&mut conn, &mut work, &settings, 5_000, false);
        assert_eq!(conn.in_flight.len(), 2, "850 and 950 were due before the end, 1,050 was not");
        assert_eq!(conn.next_due, 1_050);
    }

    /// A PING server on loopback for one connection: before answering what
    /// one read brought, it sleeps `pause(answered so far)`. It answers
    /// everything it read once the driver half-closes, then closes. Returns
    /// its address and how many it answered.
    fn ping_server(
        pause: impl Fn(u64) -> Duration + Send + 'static,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<u64>) {
        use hongbao_protocol::codec::write_response;
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut input, mut out, mut answered) = (Vec::new(), Vec::new(), 0u64);
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    return answered;
                }
                input.extend_from_slice(&buf[..n]);
                std::thread::sleep(pause(answered));
                let mut at = 0;
                while let Some(frame) = decode_frame(&input[at..]).unwrap() {
                    write_response(&mut out, Opcode::Ping as u8, frame.request_id(), Status::Ok, &[]);
                    at += frame.wire_len();
                    answered += 1;
                }
                input.drain(..at);
                stream.write_all(&out).unwrap();
                out.clear();
            }
        });
        (addr, server)
    }

    /// Drives one connection to `addr` with PINGs, open loop at one request
    /// per `interval_ps`, for `length` after no warm-up.
    fn drive_pings(
        addr: std::net::SocketAddr,
        interval_ps: u64,
        length: Duration,
        after_end: Duration,
    ) -> (Result<(), String>, Recorder) {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let fd: OwnedFd = stream.into();
        let start = Instant::now();
        let settings = DriveSettings {
            depth: 8,
            interval_ps: Some(interval_ps),
            batch: Duration::ZERO,
            phase: (0, 1),
            timing: Timing { start, measure_from: start, stop_at: start + length },
            after_end,
            expires_in_secs: 5,
        };
        let mut works = [ping_work()];
        let mut recorder = Recorder::default();
        let progress = Arc::new(AtomicU64::new(0));
        let outcome = futures_lite::future::block_on(drive(
            vec![(0, fd)],
            &mut works,
            &mut recorder,
            &settings,
            progress,
        ));
        (outcome, recorder)
    }

    #[test]
    fn a_server_that_stalls_at_the_end_is_charged_for_every_request_due_before_it() {
        // 2,000 requests due over 100 ms; the server stops for 300 ms after
        // 1,500 answers, so the last quarter is answered after the end and the
        // backlog behind the depth limit is sent after it.
        let stalled = std::sync::atomic::AtomicBool::new(false);
        let (addr, server) = ping_server(move |answered| {
            if answered >= 1_500 && !stalled.swap(true, Ordering::Relaxed) {
                Duration::from_millis(300)
            } else {
                Duration::ZERO
            }
        });
        let (outcome, recorder) = drive_pings(addr, 50_000_000, Duration::from_millis(100), AFTER_END);
        assert_eq!(outcome, Ok(()));
        assert_eq!(server.join().unwrap(), 2_000, "every request due before the end was sent");
        let ping = &recorder.ops[&Opcode::Ping];
        assert_eq!((ping.count, recorder.lapsed), (2_000, 0), "and counted, however late");
        assert!(
            ping.latency_us.max() >= 200_000,
            "the stall is in the latencies: {} µs",
            ping.latency_us.max()
        );
        let answered_during: u64 = recorder.per_second.iter().sum();
        assert!(answered_during < 2_000, "answers after the end are not in the throughput over time");
    }

    #[test]
    fn a_server_that_closes_during_the_run_fails_it_at_once() {
        // The server answers 100 PINGs, then shuts its side (a clean end of
        // stream, not a reset) and reads on. The run must fail on the end
        // of stream, saying so, not wait out its 5 s and then count the
        // requests left unanswered.
        use hongbao_protocol::codec::write_response;
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let (mut input, mut out, mut answered) = (Vec::new(), Vec::new(), 0u64);
            let mut buf = vec![0u8; 64 << 10];
            while answered < 100 {
                let n = stream.read(&mut buf).unwrap();
                input.extend_from_slice(&buf[..n]);
                let mut at = 0;
                while let Some(frame) = decode_frame(&input[at..]).unwrap() {
                    if answered < 100 {
                        write_response(&mut out, Opcode::Ping as u8, frame.request_id(), Status::Ok, &[]);
                        answered += 1;
                    }
                    at += frame.wire_len();
                }
                input.drain(..at);
                stream.write_all(&out).unwrap();
                out.clear();
            }
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
        });
        let (outcome, _) = drive_pings(addr, 1_000_000, Duration::from_secs(5), AFTER_END);
        let why = outcome.unwrap_err();
        assert!(why.contains("the server closed the connection with"), "{why}");
        server.join().unwrap();
    }

    #[test]
    fn a_backlog_that_outlasts_the_grace_after_the_end_lapses_and_is_counted() {
        // 20,000 requests due over 200 ms at depth 8; the server answers one
        // read every 2 ms, a few thousand a second: most of the schedule is
        // still unsent when the second of grace after the end is over.
        let (addr, server) = ping_server(|_| Duration::from_millis(2));
        let (outcome, recorder) =
            drive_pings(addr, 10_000_000, Duration::from_millis(200), Duration::from_secs(1));
        assert_eq!(outcome, Ok(()), "the run ends with what was sent answered");
        let answered = server.join().unwrap();
        let ping = &recorder.ops[&Opcode::Ping];
        assert_eq!(ping.count, answered, "every request sent was due in the period and is counted");
        assert_eq!(ping.count + recorder.lapsed, 20_000, "the rest of the schedule lapsed, and is counted");
        assert!(recorder.lapsed > 10_000, "{} lapsed", recorder.lapsed);
    }

    #[test]
    fn what_lapses_is_the_unsent_part_of_the_measured_schedule() {
        // One request every 100 ns from 30 ns on; measured from 1,000 to
        // 2,000 ns: due in the period are 1,030 .. 1,930, ten requests.
        let mut settings = open_loop_every_100ns(Duration::ZERO);
        let start = settings.timing.start;
        settings.timing.measure_from = start + Duration::from_nanos(1_000);
        settings.timing.stop_at = start + Duration::from_nanos(2_000);
        let mut conn = conn_with(0, 0);
        schedule_from(&mut conn, 30);
        // Sent up to 1,230 (13 requests: 30 .. 1,230): 1,330 .. 1,930 lapse.
        conn.scheduled = 13;
        conn.next_due = 1_330;
        assert_eq!(lapse(&mut conn, &settings, 1_000, 2_000), 7);
        assert_eq!(conn.next_due, 2_000, "the schedule is over");
        assert_eq!(lapse(&mut conn, &settings, 1_000, 2_000), 0, "counted once");
        // Nothing sent since the warm-up: only the period's ten count.
        schedule_from(&mut conn, 30);
        assert_eq!(lapse(&mut conn, &settings, 1_000, 2_000), 10);
        // A request due exactly at the end is not in the period.
        schedule_from(&mut conn, 0);
        conn.scheduled = 15;
        conn.next_due = 1_500;
        assert_eq!(lapse(&mut conn, &settings, 1_000, 2_000), 5, "1,500 .. 1,900; 2,000 is after the end");
        // The closed loop has no schedule to lapse.
        settings.interval_ps = None;
        schedule_from(&mut conn, 30);
        assert_eq!(lapse(&mut conn, &settings, 1_000, 2_000), 0);
    }

    #[test]
    fn in_flight_ids_are_never_0_and_come_back_once() {
        let mut in_flight = InFlight::new(2);
        let a = in_flight.insert(Tag::Ping, 5);
        let b = in_flight.insert(Tag::Ping, 6);
        assert!(a != 0 && b != 0 && a != b, "0 is the server's own request id");
        assert_eq!(in_flight.free(), 0);
        assert_eq!(in_flight.remove(a).map(|(_, start)| start), Some(5));
        assert!(in_flight.remove(a).is_none(), "answered once");
        let c = in_flight.insert(Tag::Ping, 7);
        assert_ne!(c, a, "a reused slot gets a new id");
        assert!(in_flight.remove(a).is_none());
        assert_eq!(in_flight.len(), 2);
    }
}
