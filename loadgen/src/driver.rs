//! One connection of load: a writer task that keeps requests in flight and a
//! reader task that matches answers, measures them and feeds the workload.
//!
//! Splitting the two lets the open-loop writer send on its schedule while
//! answers are still arriving, and lets the closed-loop writer refill the pipe
//! the moment a credit comes back. Credits (a semaphore of `depth` units) bound
//! the requests in flight. Requests are written in batches: as many as there
//! are credits (closed loop) or as are due (open loop), in one write.
//!
//! Latency counts from the moment a request was due (open loop) or written
//! (closed loop) to the moment its answer was read, as wrk2 does, so a server
//! that stalls is charged for every request that waited behind the stall.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use hongbao_client::answer;
use hongbao_protocol::limits::MAX_FRAME_LEN;
use hongbao_protocol::response::Response;
use hongbao_protocol::{decode_frame, Opcode};

use crate::results::Recorder;
use crate::workload::{ShardWork, Tag};

/// Bits of a request id that name its in-flight slot.
const SLOT_BITS: u32 = 20;
/// How long the writer waits when the workload has nothing to send.
const IDLE_WAIT: Duration = Duration::from_micros(50);

/// When a run starts, starts measuring, and stops.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Load starts.
    pub start: Instant,
    /// Answers from here on are measured.
    pub measure_from: Instant,
    /// No request is sent after this.
    pub stop_at: Instant,
}

/// Requests in flight on one connection, by slot.
#[derive(Debug)]
struct InFlight {
    slots: Vec<Option<(Tag, Instant, u64)>>,
    free: Vec<u32>,
    seq: u64,
}

impl InFlight {
    fn new(depth: usize) -> InFlight {
        InFlight { slots: vec![None; depth], free: (0..depth as u32).rev().collect(), seq: 1 }
    }

    fn insert(&mut self, tag: Tag, start: Instant) -> u64 {
        let slot = self.free.pop().expect("a credit guarantees a free slot");
        let id = (self.seq << SLOT_BITS) | u64::from(slot);
        self.seq += 1;
        self.slots[slot as usize] = Some((tag, start, id));
        id
    }

    fn remove(&mut self, id: u64) -> Option<(Tag, Instant)> {
        let slot = (id & ((1 << SLOT_BITS) - 1)) as usize;
        match self.slots.get(slot) {
            Some(Some((_, _, held))) if *held == id => {}
            _ => return None,
        }
        let (tag, start, _) = self.slots[slot].take()?;
        self.free.push(slot as u32);
        Some((tag, start))
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// How one connection is driven.
#[derive(Clone, Debug)]
pub struct DriveSettings {
    /// Requests in flight at most.
    pub depth: usize,
    /// Open loop: time between this connection's requests. `None`: closed loop.
    pub interval: Option<Duration>,
    /// Run timing.
    pub timing: Timing,
    /// Expiry of the envelopes created.
    pub expires_in_secs: u32,
}

/// Drives one connection until the run stops and every answer is in.
pub async fn drive(
    stream: TcpStream,
    work: Rc<RefCell<ShardWork>>,
    recorder: Rc<RefCell<Recorder>>,
    settings: DriveSettings,
    progress: Arc<AtomicU64>,
) -> Result<(), String> {
    assert!(settings.depth >= 1 && settings.depth < (1 << SLOT_BITS));
    let (reader, writer) = futures_lite::io::split(stream);
    let in_flight = Rc::new(RefCell::new(InFlight::new(settings.depth)));
    let credits = Rc::new(Semaphore::new(settings.depth as u64));
    let read = glommio::spawn_local(read_answers(
        reader,
        in_flight.clone(),
        credits.clone(),
        work.clone(),
        recorder,
        settings.timing,
        progress,
    ));
    let wrote = write_requests(writer, in_flight.clone(), credits, work, &settings).await;
    let read = read.await;
    wrote.and(read)
}

async fn write_requests(
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
    in_flight: Rc<RefCell<InFlight>>,
    credits: Rc<Semaphore>,
    work: Rc<RefCell<ShardWork>>,
    settings: &DriveSettings,
) -> Result<(), String> {
    let timing = settings.timing;
    let mut out = Vec::with_capacity(settings.depth * 64);
    let mut next_due = timing.start;
    loop {
        if Instant::now() >= timing.stop_at {
            break;
        }
        if credits.acquire(1).await.is_err() {
            break; // The reader closed: the connection is gone.
        }
        let mut n = 1;
        while n < settings.depth && credits.try_acquire(1).unwrap_or(false) {
            n += 1;
        }
        let now = if let Some(interval) = settings.interval {
            let now = Instant::now();
            if next_due > now {
                glommio::timer::sleep(next_due - now).await;
            }
            let now = Instant::now();
            let due = ((now - next_due).as_nanos() / interval.as_nanos().max(1)) as usize + 1;
            if due < n {
                credits.signal((n - due) as u64);
                n = due;
            }
            now
        } else {
            Instant::now()
        };
        let mut sent = 0;
        {
            let mut work = work.borrow_mut();
            let mut in_flight = in_flight.borrow_mut();
            while sent < n {
                let Some(tag) = work.next_tag() else { break };
                let start = match settings.interval {
                    Some(interval) => {
                        let due = next_due;
                        next_due += interval;
                        due
                    }
                    None => now,
                };
                let id = in_flight.insert(tag, start);
                tag.request(settings.expires_in_secs).encode(id, &mut out);
                sent += 1;
            }
        }
        if sent < n {
            credits.signal((n - sent) as u64);
        }
        if sent == 0 {
            glommio::timer::sleep(IDLE_WAIT).await;
            continue;
        }
        writer.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
        out.clear();
    }
    // Half-close: the server answers everything it read, then closes, which
    // ends the reader once every answer is in.
    writer.close().await.map_err(|e| format!("close: {e}"))
}

async fn read_answers(
    mut reader: futures_lite::io::ReadHalf<TcpStream>,
    in_flight: Rc<RefCell<InFlight>>,
    credits: Rc<Semaphore>,
    work: Rc<RefCell<ShardWork>>,
    recorder: Rc<RefCell<Recorder>>,
    timing: Timing,
    progress: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut buf = vec![0u8; 4 * MAX_FRAME_LEN];
    let mut filled = 0;
    let result = loop {
        let n = match reader.read(&mut buf[filled..]).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(format!("read: {e}")),
        };
        filled += n;
        let now = Instant::now();
        let measured = now >= timing.measure_from && now < timing.stop_at;
        let second = now.saturating_duration_since(timing.measure_from).as_secs() as usize;
        let mut at = 0;
        let mut answered = 0u64;
        let mut work = work.borrow_mut();
        let mut recorder = recorder.borrow_mut();
        let mut in_flight = in_flight.borrow_mut();
        let failed = loop {
            let frame = match decode_frame(&buf[at..filled]) {
                Ok(Some(frame)) => frame,
                Ok(None) => break None,
                Err(e) => break Some(format!("bad frame from the server: {e}")),
            };
            at += frame.wire_len();
            let response = match Response::from_frame(&frame) {
                Ok(response) => response,
                Err(e) => break Some(format!("bad response: {e}")),
            };
            let Some((tag, start)) = in_flight.remove(response.request_id) else {
                break Some(format!("answer to request id {} that is not in flight", response.request_id));
            };
            let answer = match answer::decode(tag.opcode(), &response) {
                Ok(answer) => answer,
                Err(e) => break Some(format!("bad {} answer: {e}", tag.opcode())),
            };
            if measured {
                let latency_us = now.saturating_duration_since(start).as_micros() as u64;
                recorder.record(tag.opcode(), answer.status, latency_us, second);
            }
            work.on_answer(tag, &answer);
            answered += 1;
        };
        drop((work, recorder, in_flight));
        credits.signal(answered);
        progress.fetch_add(answered, Ordering::Relaxed);
        if let Some(why) = failed {
            break Err(why);
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
    };
    let lost = in_flight.borrow().len();
    credits.close();
    match result {
        Ok(()) if lost > 0 => Err(format!("the server closed with {lost} requests unanswered")),
        other => other,
    }
}

/// The opcode names reports use, in display order.
pub const OPCODES: [Opcode; 5] = [Opcode::Grab, Opcode::Open, Opcode::Create, Opcode::Query, Opcode::Ping];
