//! One shard: a glommio executor on its own CPU that owns a slice of the
//! envelopes, serves the main port (SO_REUSEPORT) and its shard-aware port, and
//! answers batches that other shards forward to it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};
use glommio::timer::sleep;
use hongbao_protocol::decode_frame;
use zerocopy::little_endian::U16;

use crate::clock::{Clock, SystemClock};
use crate::config::{Durability, ServerConfig, ShardPlan};
use crate::counters::{add, ShardCounters};
use crate::engine::Engine;
use crate::forward::ForwardBatch;
use crate::handler::answer_frame;
use crate::net::driver;
use crate::net::listener::Listener;
use crate::wal::group::{run_writer, GroupCommit};
use crate::wal::recover::recover;
use crate::wal::segment::{list_segments, shard_dir, SegmentWriter};
use crate::wal::snapshot;

/// How often a shard runs its engine's timers and looks for shutdown. Short,
/// so that the work of a storm's expiries and evictions (one envelope every
/// few microseconds at the peak) comes in small slices, not in stalls.
const TICK_INTERVAL: Duration = Duration::from_millis(1);
/// Most timers one slice runs. An eviction touches an envelope last seen
/// seconds ago (cold in cache) and frees its memory: 0.3 to 1.4 us each on
/// the benchmark VM, so a slice is at most a few hundred microseconds. A
/// shard that is behind runs the next slice as soon as the socket loop has
/// had a turn, not a tick later: with 5,000 a tick and a tick's sleep after
/// it, one late tick (4 ms) made the next one later still, and a storm's
/// evictions came as runs of 2 to 7 ms stalls.
const TICK_SLICE: usize = 256;
/// How long a shard that is behind with its timers lets the socket loop run
/// between two slices.
const TICK_BEHIND_WAIT: Duration = Duration::from_micros(20);
/// How often the shard publishes its metrics.
const METRICS_EVERY: Duration = Duration::from_millis(10);
/// The wait before the first retry of a snapshot that failed; it doubles
/// with each failure in a row, up to [`SNAPSHOT_RETRY_MAX`]. Without it a
/// failing snapshot (a full disk) would be retried every tick, each try
/// copying the whole engine and writing a log line.
const SNAPSHOT_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between snapshot retries.
const SNAPSHOT_RETRY_MAX: Duration = Duration::from_secs(300);

/// What every task of a shard shares. Lives in an `Rc`: one thread only.
#[derive(Debug)]
pub struct Shard {
    /// This shard's index.
    pub id: u16,
    /// Shards in the server.
    pub shard_count: u16,
    /// Shard-aware port of every shard, in wire order for HELLO.
    pub ports: Vec<U16>,
    /// The envelopes this shard owns. Borrowed only between awaits.
    pub engine: Rc<RefCell<Engine>>,
    /// STATS counters.
    pub counters: ShardCounters,
    /// When the shard started.
    pub started: Instant,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most bytes a connection may hold unanswered.
    pub read_buffer_bytes: usize,
    /// How long the socket loop spins without work before it parks.
    pub spin: Duration,
    /// The clock requests are stamped with.
    pub clock: SystemClock,
    /// Set by a signal; every loop of the shard ends soon after.
    pub stopping: Arc<AtomicBool>,
    /// Why the server stopped, if a shard failed (see [`Shard::fail`]).
    pub failure: Arc<std::sync::Mutex<Option<String>>>,
    /// The log's group commit; `None` with `--durability none`.
    pub commit: Option<Rc<GroupCommit>>,
    /// The credential HELLO must present.
    pub auth: crate::auth::Auth,
    /// Time a connection has to authenticate.
    pub auth_timeout: Duration,
    /// Time a client has to finish a frame it started.
    pub frame_timeout: Duration,
    /// Largest frame body accepted (HELLO tells clients).
    pub max_body_bytes: u32,
    /// Most connections from one source address, on this shard.
    pub max_connections_per_ip: usize,
    /// Most requests a connection may have taken and not yet sent back.
    pub max_in_flight: usize,
    /// Open connections by source address.
    pub per_source: RefCell<ahash::AHashMap<std::net::IpAddr, usize>>,
    /// Where the shard publishes its figures; its socket loop's watch is here.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Shard {
    /// Now, for a batch of requests.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Whether the server is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Stops the whole server because this shard cannot go on (its socket
    /// ring failed): every shard drains and the process exits non-zero with
    /// `why`, so a supervisor restarts it instead of taking it for a clean
    /// stop. The first failure is the one kept.
    pub fn fail(&self, why: String) {
        crate::log!("hongbao-server: shard {}: {why}", self.id);
        let mut failure = self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        failure.get_or_insert_with(|| format!("shard {}: {why}", self.id));
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Open connections from `ip` on this shard.
    pub fn connections_from(&self, ip: std::net::IpAddr) -> usize {
        self.per_source.borrow().get(&ip).copied().unwrap_or(0)
    }

    /// Whether changes must be refused: the log failed to write.
    pub fn refuses_changes(&self) -> bool {
        self.commit.as_ref().is_some_and(|c| c.failed())
    }

    /// The number of the last change journaled so far.
    pub fn last_change(&self) -> u64 {
        self.engine.borrow().journal_last_seq()
    }

    /// The single-valued figures STATS and the metrics endpoint report.
    pub fn gauges(&self, engine: &Engine) -> crate::metrics::Gauges {
        let c = &self.counters;
        crate::metrics::Gauges {
            connections: c.connections.get(),
            connections_refused: c.connections_refused.get(),
            connection_buffer_bytes: c.connection_buffer_bytes.get(),
            bytes_in: c.bytes_in.get(),
            bytes_out: c.bytes_out.get(),
            forwarded_out: c.forwarded_out.get(),
            forwarded_in: c.forwarded_in.get(),
            envelopes: engine.envelope_count(),
            envelopes_max: engine.config().envelopes_max,
            claims: engine.claims_held(),
            claims_max: engine.config().claims_max,
            log_syncs: self.commit.as_ref().map_or(0, |commit| commit.syncs.get()),
            log_failed: u64::from(self.commit.as_ref().is_some_and(|commit| commit.failed())),
            loop_stalls: c.loop_stalls.get(),
            loop_stall_us: c.loop_stall_us.get(),
            loop_stall_max_us: c.loop_stall_max_us.get(),
            loop_busy_us: c.loop_busy_ns.get() / 1_000,
            loop_idle_us: c.loop_idle_ns.get() / 1_000,
        }
    }

    /// The latency of the log's syncs; `None` without a log.
    pub fn log_sync_latency(&self) -> Option<&crate::counters::LocalHistogram> {
        self.commit.as_ref().map(|commit| &commit.sync_latency)
    }

    /// The log record the answers given since the last call show (see
    /// [`Engine::take_depends`]).
    pub fn take_depends(&self) -> u64 {
        self.engine.borrow_mut().take_depends()
    }

    /// Waits until log record `need` is durable; at once if it is (or is 0),
    /// or without a log. `false`: it never will be, and answers that show it
    /// may not go out.
    pub async fn durable_for(&self, need: u64) -> bool {
        match &self.commit {
            Some(commit) => commit.wait(need).await,
            None => true,
        }
    }
}

/// Runs shard `plan.id` until `stopping` is set. Reports on `ready` once both
/// its listeners are bound (or why they could not be).
pub async fn run_shard(
    config: Arc<ServerConfig>,
    plan: ShardPlan,
    mesh: MeshBuilder<ForwardBatch, glommio::channels::channel_mesh::Full>,
    stopping: Arc<AtomicBool>,
    failure: Arc<std::sync::Mutex<Option<String>>>,
    ready: mpsc::Sender<Result<u16, String>>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    // First, before the engine allocates anything, on this thread so the
    // memory is in this thread's arena; kept until the shard ends.
    let prefaulted = prefault_heap(plan.id, config.prefault_bytes);
    let shard_count = config.shards.len() as u16;
    let mut engine_config = config.engine.clone();
    engine_config.shard_id = plan.id;
    let mut engine = Engine::new(engine_config);
    let mut last_snapshot = 0;
    let log = match config.durability {
        Durability::Sync => match open_log(&config, plan.id, &mut engine, &mut last_snapshot).await {
            Ok(log) => Some(log),
            Err(why) => {
                let _ = ready.send(Err(format!("shard {}: {why}", plan.id)));
                return;
            }
        },
        Durability::None => None,
    };
    let engine = Rc::new(RefCell::new(engine));
    let (commit, writer) = match log {
        Some((writer, durable_seq)) => {
            let commit = Rc::new(GroupCommit::new(durable_seq));
            let task = glommio::spawn_local(run_writer(engine.clone(), commit.clone(), writer, plan.id));
            (Some(commit), Some(task))
        }
        None => (None, None),
    };
    let shard = Rc::new(Shard {
        id: plan.id,
        shard_count,
        ports: config.shard_ports().into_iter().map(U16::new).collect(),
        engine,
        counters: ShardCounters::default(),
        started: Instant::now(),
        max_connections: config.max_connections,
        read_buffer_bytes: config.read_buffer_bytes,
        spin: config.spin,
        clock: SystemClock,
        stopping,
        failure,
        commit,
        auth: config.auth.clone(),
        auth_timeout: config.auth_timeout,
        frame_timeout: config.frame_timeout,
        max_connections_per_ip: config.max_connections_per_ip,
        max_in_flight: config.max_in_flight,
        max_body_bytes: config.max_body_bytes,
        per_source: RefCell::new(ahash::AHashMap::new()),
        metrics: metrics.clone(),
    });

    let Ok((senders, receivers)) = mesh.join().await else {
        let _ = ready.send(Err(format!("shard {}: could not join the shard mesh", plan.id)));
        return;
    };
    let senders = Rc::new(senders);
    serve_forwarded(&shard, receivers);

    let listen_shard = std::net::SocketAddr::new(config.listen.ip(), plan.port);
    let listeners =
        Listener::bind(config.listen).and_then(|main| Ok(vec![main, Listener::bind(listen_shard)?]));
    let listeners = match listeners {
        Ok(listeners) => listeners,
        Err(error) => {
            let _ = ready.send(Err(format!("shard {}: cannot listen: {error}", plan.id)));
            return;
        }
    };
    // Set up before the shard says it is ready: a kernel without what the
    // ring needs fails the start, with the reason, not the first turn.
    let ring = match hongbao_uring::Ring::new(config.ring) {
        Ok(ring) => ring,
        Err(error) => {
            let _ = ready.send(Err(format!("shard {}: cannot set up the socket ring: {error}", plan.id)));
            return;
        }
    };
    let sockets = glommio::spawn_local(driver::run(shard.clone(), senders.clone(), listeners, ring));
    let _ = ready.send(Ok(plan.id));

    let snapshots = Rc::new(SnapshotState {
        covers: Cell::new(last_snapshot),
        running: Cell::new(false),
        failures: Cell::new(0),
        retry_at: Cell::new(None),
    });
    let mut behind = false;
    let mut next_publish = Instant::now();
    while !shard.is_stopping() {
        // Timers due still: the socket loop takes a turn first. (A timer, not
        // a yield: glommio runs its timers, the socket loop's breath among
        // them, only between tasks that wait, and a yielding task never does.)
        sleep(if behind { TICK_BEHIND_WAIT } else { TICK_INTERVAL }).await;
        let woke = Instant::now();
        let now_ms = shard.now_ms();
        let (pending, last) = {
            let mut engine = shard.engine.borrow_mut();
            behind = engine.tick(now_ms, TICK_SLICE) == TICK_SLICE;
            (engine.journal_pending(), engine.journal_last_seq())
        };
        let now = Instant::now();
        if now >= next_publish {
            publish_metrics(&shard, &metrics.shards[usize::from(plan.id)]);
            next_publish = now + METRICS_EVERY;
        }
        // The tick's expiries and evictions are the shard's work too.
        shard.counters.note_other_work(now.duration_since(woke));
        // Expiries and evictions are logged too, though nobody waits for them.
        if let (Some(commit), true) = (&shard.commit, pending > 0) {
            commit.poke();
        }
        let every = config.snapshot_every;
        // A failed log makes no snapshot (nothing it covers can be durable);
        // a failed snapshot waits its backoff.
        if shard.commit.as_ref().is_some_and(|commit| !commit.failed())
            && every > 0
            && last >= snapshots.covers.get() + every
            && !snapshots.running.get()
            && snapshots.retry_at.get().is_none_or(|at| now >= at)
        {
            snapshots.running.set(true);
            let dir = shard_dir(&config.data_dir, plan.id);
            glommio::spawn_local(take_snapshot(shard.clone(), dir, snapshots.clone())).detach();
        }
    }
    sockets.await;
    senders.close();
    if let (Some(commit), Some(writer)) = (&shard.commit, writer) {
        commit.close();
        writer.await;
    }
    drop(prefaulted);
}

/// Touches `bytes` of this thread's heap (see [`crate::prefault`]) and says
/// how long it took.
fn prefault_heap(shard: u16, bytes: u64) -> crate::prefault::Prefaulted {
    let started = Instant::now();
    let done = crate::prefault::prefault(usize::try_from(bytes).unwrap_or(usize::MAX));
    if done.bytes > 0 {
        crate::log!(
            "hongbao-server: shard {shard}: prefaulted {} MiB ({} page faults) in {} ms",
            done.bytes >> 20,
            done.faults,
            started.elapsed().as_millis()
        );
    }
    done
}

/// Copies the shard's figures to where the metrics endpoint reads them.
fn publish_metrics(shard: &Shard, slot: &crate::metrics::ShardMetrics) {
    let c = &shard.counters;
    let gauges = shard.gauges(&shard.engine.borrow());
    let empty = crate::counters::LocalHistogram::default();
    slot.publish(&c.answers, &gauges, shard.log_sync_latency().unwrap_or(&empty), &c.latency);
}

/// The shard's last snapshot, and whether one is being taken.
#[derive(Debug)]
struct SnapshotState {
    covers: Cell<u64>,
    running: Cell<bool>,
    /// Snapshots that failed in a row, and when the next may start.
    failures: Cell<u32>,
    retry_at: Cell<Option<Instant>>,
}

/// How long to wait after the `failures`-th snapshot failure in a row: one
/// second, doubling, at most [`SNAPSHOT_RETRY_MAX`].
fn snapshot_retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    SNAPSHOT_RETRY_FIRST.saturating_mul(1 << doublings).min(SNAPSHOT_RETRY_MAX)
}

/// Takes a snapshot: the engine's image (a pause of the shard while it is
/// copied), written once every record it covers is durable, then the older
/// snapshots and the segments it covers are removed.
async fn take_snapshot(shard: Rc<Shard>, dir: std::path::PathBuf, state: Rc<SnapshotState>) {
    let started = Instant::now();
    let result = async {
        let (covers, records, generations) = {
            let engine = shard.engine.borrow();
            let (records, generations) = engine.image();
            (engine.journal_last_seq(), records, generations)
        };
        let commit = shard.commit.as_ref().ok_or("no log")?;
        if !commit.wait(covers).await {
            return Err("the log failed".to_string());
        }
        let bytes = snapshot::write(&dir, shard.id, covers, &generations, &records)
            .await
            .map_err(|e| format!("write: {e}"))?;
        drop(records);
        // In place from here on, whatever happens to the clean-up: the next
        // snapshot is due `snapshot_every` records after this one.
        state.covers.set(covers);
        // Unlinking big files and listing directories are blocking system
        // calls: off the shard's thread.
        let removed = glommio::executor().spawn_blocking(move || remove_covered(&dir, covers)).await;
        Ok::<_, String>((covers, bytes, removed))
    }
    .await;
    match result {
        Ok((covers, bytes, removed)) => {
            state.failures.set(0);
            state.retry_at.set(None);
            let removed = match removed {
                Ok(n) => format!("{n} segments removed"),
                Err(why) => format!("removing what it covers failed (the next snapshot tries again): {why}"),
            };
            crate::log!(
                "hongbao-server: shard {}: snapshot at record {covers} ({} MiB) in {} ms, {removed}",
                shard.id,
                bytes >> 20,
                started.elapsed().as_millis()
            );
        }
        Err(why) => {
            let failures = state.failures.get().saturating_add(1);
            let wait = snapshot_retry_after(failures);
            state.failures.set(failures);
            state.retry_at.set(Some(Instant::now() + wait));
            crate::log!(
                "hongbao-server: shard {}: snapshot failed ({failures} in a row, next try in {} s): {why}",
                shard.id,
                wait.as_secs()
            );
        }
    }
    state.running.set(false);
}

/// Removes the snapshots older than the one covering `covers` and the log
/// segments it covers. Returns how many segments went.
fn remove_covered(dir: &std::path::Path, covers: u64) -> Result<usize, String> {
    for (older, path) in snapshot::list_snapshots(dir).map_err(|e| e.to_string())? {
        if older < covers {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let segments = list_segments(dir).map_err(|e| e.to_string())?;
    let mut removed = 0;
    for pair in segments.windows(2) {
        if pair[1].0 <= covers + 1 {
            std::fs::remove_file(&pair[0].1).map_err(|e| format!("{}: {e}", pair[0].1.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Recovers shard `id`'s log into `engine` and opens a new segment after it.
/// Returns the writer and the last durable record's number.
async fn open_log(
    config: &ServerConfig,
    id: u16,
    engine: &mut Engine,
    last_snapshot: &mut u64,
) -> Result<(SegmentWriter, u64), String> {
    let dir = shard_dir(&config.data_dir, id);
    let started = Instant::now();
    if dir.exists() {
        let cut = snapshot::remove_temporaries(&dir)
            .map_err(|e| format!("cannot remove a cut snapshot in {}: {e}", dir.display()))?;
        if cut > 0 {
            crate::log!("hongbao-server: shard {id}: removed {cut} snapshot file(s) a crash cut short");
        }
    }
    let found = recover(engine, &dir).map_err(|e| format!("cannot recover the log: {e}"))?;
    *last_snapshot = found.snapshot_covers;
    engine.enable_journal(found.next_seq);
    let writer = SegmentWriter::create(&dir, found.next_seq)
        .await
        .map_err(|e| format!("cannot open a log segment in {}: {e}", dir.display()))?;
    crate::log!(
        "hongbao-server: shard {id}: recovered the snapshot at record {} and {} records from {} segments in {} ms ({} torn bytes cut), {} envelopes",
        found.snapshot_covers,
        found.records,
        found.segments,
        started.elapsed().as_millis(),
        found.torn_bytes,
        engine.envelope_count()
    );
    Ok((writer, found.next_seq - 1))
}

/// Spawns one task per peer shard that answers the batches it forwards.
fn serve_forwarded(shard: &Rc<Shard>, mut receivers: Receivers<ForwardBatch>) {
    for (_peer, stream) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(mut batch) = stream.recv().await {
                let now_ms = shard.now_ms();
                let mut at = 0;
                let need = {
                    let mut engine = shard.engine.borrow_mut();
                    while let Ok(Some(frame)) = decode_frame(&batch.frames[at..]) {
                        answer_frame(&shard, &mut engine, now_ms, &frame, &mut batch.answers);
                        at += frame.wire_len();
                    }
                    engine.take_depends()
                };
                if at != batch.frames.len() {
                    // The origin checked every frame with the same decoder, so
                    // this is a bug; dropping the batch closes the origin's
                    // connection without its answers, and no other.
                    debug_assert!(false, "a forwarded batch holds only whole, valid frames");
                    continue;
                }
                add(&shard.counters.forwarded_in, batch.count);
                // The answers show changes only once they are durable; if
                // they never will be, the batch is dropped and the connection
                // it came from closes without them. The wait is a task of its
                // own: the peer's next batches are answered meanwhile and
                // share the same group commit, instead of one batch per sync.
                let durable = shard.commit.as_ref().is_none_or(|commit| need <= commit.durable());
                if durable {
                    let _ = batch.reply.send((batch.frames, batch.answers));
                } else {
                    let shard = shard.clone();
                    glommio::spawn_local(async move {
                        if shard.durable_for(need).await {
                            let _ = batch.reply.send((batch.frames, batch.answers));
                        }
                    })
                    .detach();
                }
            }
        })
        .detach();
    }
}

/// Keeps the compiler honest about which mesh handle type the shard uses.
pub type MeshSenders = Senders<ForwardBatch>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_that_fails_stops_the_server_and_keeps_the_first_reason() {
        let shard = crate::fuzz::small_shard(0);
        assert!(!shard.is_stopping());
        shard.fail("the socket ring failed: EBADR".into());
        shard.fail("a later failure".into());
        assert!(shard.is_stopping(), "every shard drains");
        let failure = shard.failure.lock().unwrap().clone();
        assert_eq!(failure.as_deref(), Some("shard 0: the socket ring failed: EBADR"));
    }

    #[test]
    fn a_failing_snapshot_waits_longer_each_time_up_to_the_bound() {
        let waits: Vec<u64> = (1..=12).map(|n| snapshot_retry_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(snapshot_retry_after(u32::MAX), SNAPSHOT_RETRY_MAX, "no overflow after many failures");
        assert_eq!(snapshot_retry_after(0), SNAPSHOT_RETRY_FIRST);
    }
}
