//! The shard watchdog: a plain thread that notices a shard whose socket loop
//! has stopped turning and interrupts the thread's wait with a signal.
//!
//! A parked socket loop wakes at least every 100 ms (its own timer), so a loop
//! that has not turned for a second is either doing one very long piece of
//! work or asleep in glommio's `io_uring_enter` with every wake-up missed.
//! The second happened once on the benchmark VM (docs/BENCHMARKS.md, "A shard
//! that stopped"): the thread slept for good, answered no one and ignored
//! SIGTERM, and an interruption (gdb attaching) was all it took to go on. A
//! signal does the same here: the kernel ends the wait with `EINTR`, which
//! glommio and the socket ring take as "look again", so the reactor reaps its
//! rings, fires its overdue timers and the loop turns. To a busy thread the
//! signal is a no-op.
//!
//! The handler does nothing and is installed without `SA_RESTART`: an ignored
//! signal (SIGURG's default) would not end the wait, and a restarted one
//! would go back to sleep. SIGURG because nothing else in the server uses it
//! and no socket of ours names an owner (`F_SETOWN`) that the kernel would
//! send it to.
//!
//! The hot path pays one plain store a turn ([`Watch::beat`]); the watchdog
//! only reads. A nudge is logged and counted (`hongbao_shard_nudges_total`),
//! so a shard that needed one shows in the metrics, not only in the log.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// How long a loop may go without a turn before its thread is signalled:
/// ten times the longest a parked loop sleeps.
pub const STALL_AFTER: Duration = Duration::from_secs(1);
/// The longest between two nudges of one stall. After the first, the wait
/// doubles (1, 2, 4 ... s): a thread that one signal did not bring back is
/// most likely busy (one long piece of work), and a log line a second would
/// only bury the first.
pub const NUDGE_BACKOFF_MAX: Duration = Duration::from_secs(64);
/// How often the watchdog looks.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
/// A look this much later than the last means the watchdog itself was not
/// running (the process stopped, the machine paused): quiet time it did not
/// see is not held against the shards.
pub const OVERSLEPT: Duration = Duration::from_millis(600);
/// The signal a nudge sends.
const NUDGE_SIGNAL: libc::c_int = libc::SIGURG;

/// What one shard's loop shows the watchdog. Written by the shard's thread
/// (`begin`, `beat`, `end`) and by the watchdog (`nudges`).
#[derive(Debug, Default)]
pub struct Watch {
    /// Turns of the loop so far; only its changes matter.
    turns: AtomicU64,
    /// The kernel id of the loop's thread while the loop runs, else 0.
    thread: AtomicI32,
    /// Signals sent to the thread.
    nudges: AtomicU64,
}

impl Watch {
    /// Starts watching the calling thread.
    pub fn begin(&self) {
        self.thread.store(current_thread(), Ordering::Release);
    }

    /// Notes one turn. Only the loop's thread writes `turns`, so a load and a
    /// store do (no locked instruction on the hot path).
    pub fn beat(&self) {
        self.turns.store(self.turns.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Stops watching: the loop has ended, its thread may be gone.
    pub fn end(&self) {
        self.thread.store(0, Ordering::Release);
    }

    /// Signals sent to this shard's thread so far.
    pub fn nudges(&self) -> u64 {
        self.nudges.load(Ordering::Relaxed)
    }
}

/// What the watchdog decided about one shard on one look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signal `thread`: no turn for `quiet` (the `nth` nudge of this stall).
    Nudge { shard: usize, thread: i32, quiet: Duration, nth: u64 },
    /// The loop turns again after `nudges` nudges.
    Resumed { shard: usize, nudges: u64 },
}

/// The watchdog's memory of one shard.
#[derive(Clone, Copy, Debug)]
struct Seen {
    turns: u64,
    /// When `turns` was last seen to change (or watching began).
    changed: Instant,
    /// When the last nudge of this stall went out.
    nudged: Option<Instant>,
    /// Nudges in this stall.
    nudges: u64,
}

/// The watchdog's decisions, apart from its thread and its signals, so that
/// they can be tested with made-up times.
#[derive(Debug, Default)]
pub struct Observer {
    seen: Vec<Option<Seen>>,
    /// When the last look was.
    looked: Option<Instant>,
}

impl Observer {
    /// Looks at every shard at `now`; appends what to do to `verdicts`.
    pub fn check(&mut self, watches: &[&Watch], now: Instant, verdicts: &mut Vec<Verdict>) {
        if self.looked.is_some_and(|last| now.saturating_duration_since(last) >= OVERSLEPT) {
            self.pardon(now);
        }
        self.looked = Some(now);
        self.seen.resize(watches.len(), None);
        for (shard, (watch, seen)) in watches.iter().zip(&mut self.seen).enumerate() {
            let thread = watch.thread.load(Ordering::Acquire);
            let turns = watch.turns.load(Ordering::Relaxed);
            if thread == 0 {
                *seen = None;
                continue;
            }
            let seen = seen.get_or_insert(Seen { turns, changed: now, nudged: None, nudges: 0 });
            if turns != seen.turns {
                if seen.nudges > 0 {
                    verdicts.push(Verdict::Resumed { shard, nudges: seen.nudges });
                }
                *seen = Seen { turns, changed: now, nudged: None, nudges: 0 };
                continue;
            }
            let quiet = now.saturating_duration_since(seen.changed);
            let due = match seen.nudged {
                None => seen.changed + STALL_AFTER,
                Some(at) => at + backoff(seen.nudges),
            };
            if now >= due {
                seen.nudged = Some(now);
                seen.nudges += 1;
                verdicts.push(Verdict::Nudge { shard, thread, quiet, nth: seen.nudges });
            }
        }
    }

    /// Forgets the quiet time of every shard up to `now`: the watchdog was
    /// not running, so neither were the shards, most likely (a stopped
    /// process, a paused machine), and their loops get a fresh second.
    fn pardon(&mut self, now: Instant) {
        for seen in self.seen.iter_mut().flatten() {
            seen.changed = now;
            seen.nudged = None;
        }
    }
}

/// The wait after the `nudges`-th nudge of a stall before the next.
fn backoff(nudges: u64) -> Duration {
    let doublings = u32::try_from(nudges.saturating_sub(1)).unwrap_or(u32::MAX).min(16);
    (STALL_AFTER * (1u32 << doublings)).min(NUDGE_BACKOFF_MAX)
}

/// Installs the no-op handler for [`NUDGE_SIGNAL`] (once per process).
#[allow(unsafe_code)]
pub fn install_handler() -> std::io::Result<()> {
    static INSTALL: Once = Once::new();
    static RESULT: AtomicI32 = AtomicI32::new(0);
    extern "C" fn ignore(_: libc::c_int) {}
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
        // handler is async-signal-safe, as it does nothing.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0;
            if libc::sigaction(NUDGE_SIGNAL, &action, std::ptr::null_mut()) != 0 {
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL);
                RESULT.store(errno, Ordering::Relaxed);
            }
        }
    });
    match RESULT.load(Ordering::Relaxed) {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Signals thread `thread` of this process. `tgkill` rather than
/// `pthread_kill`: a kernel thread id that has gone gives `ESRCH`, where a
/// `pthread_t` of a thread that has ended may not be used at all.
#[allow(unsafe_code)]
pub fn nudge(thread: i32) -> std::io::Result<()> {
    // SAFETY: plain system calls with integer arguments.
    let result = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), thread, NUDGE_SIGNAL) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The kernel id of the calling thread.
#[allow(unsafe_code)]
fn current_thread() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Starts the watchdog over every shard of `metrics`; it ends once `finished`
/// is set.
pub fn spawn(metrics: Arc<Metrics>, finished: Arc<AtomicBool>) -> std::io::Result<()> {
    install_handler()?;
    std::thread::Builder::new().name("watchdog".into()).spawn(move || {
        let mut observer = Observer::default();
        let mut verdicts = Vec::new();
        let watches: Vec<&Watch> = metrics.shards.iter().map(|s| &s.watch).collect();
        while !finished.load(Ordering::Relaxed) {
            std::thread::sleep(CHECK_EVERY);
            observer.check(&watches, Instant::now(), &mut verdicts);
            for verdict in verdicts.drain(..) {
                act(&watches, verdict);
            }
        }
    })?;
    Ok(())
}

/// Sends a nudge and says so, or says that a shard turns again.
fn act(watches: &[&Watch], verdict: Verdict) {
    match verdict {
        Verdict::Nudge { shard, thread, quiet, nth } => {
            let sent = match nudge(thread) {
                Ok(()) => {
                    watches[shard].nudges.fetch_add(1, Ordering::Relaxed);
                    String::new()
                }
                Err(error) => format!(" (the signal failed: {error})"),
            };
            eprintln!(
                "hongbao-server: warning: shard {shard}: its socket loop has not turned for {} ms \
                 (busy, or asleep and not woken); interrupting its thread, nudge {nth}{sent}",
                quiet.as_millis()
            );
        }
        Verdict::Resumed { shard, nudges } => {
            eprintln!("hongbao-server: shard {shard}: its socket loop turns again after {nudges} nudge(s)");
        }
    }
}

#[allow(unsafe_code)]
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn watched() -> Watch {
        let watch = Watch::default();
        watch.thread.store(4242, Ordering::Relaxed);
        watch
    }

    /// Looks every `CHECK_EVERY` from `from` ms to `to` ms (inclusive) after
    /// `start`, as the watchdog's thread does; returns the verdicts.
    fn look(observer: &mut Observer, watches: &[&Watch], start: Instant, from: u64, to: u64) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        let step = CHECK_EVERY.as_millis() as usize;
        for ms in (from..=to).step_by(step) {
            observer.check(watches, start + Duration::from_millis(ms), &mut verdicts);
        }
        verdicts
    }

    fn nudge_at(quiet_ms: u64, nth: u64) -> Verdict {
        Verdict::Nudge { shard: 0, thread: 4242, quiet: Duration::from_millis(quiet_ms), nth }
    }

    #[test]
    fn a_quiet_loop_is_nudged_after_a_second_then_less_and_less_often() {
        let watch = watched();
        let mut observer = Observer::default();
        let start = Instant::now();
        assert_eq!(look(&mut observer, &[&watch], start, 0, 900), [], "quiet for less than STALL_AFTER");
        assert_eq!(look(&mut observer, &[&watch], start, 1_000, 1_000), [nudge_at(1_000, 1)]);
        // Then 1, 2, 4 s after each nudge.
        assert_eq!(look(&mut observer, &[&watch], start, 1_100, 1_900), []);
        assert_eq!(look(&mut observer, &[&watch], start, 2_000, 3_900), [nudge_at(2_000, 2)]);
        assert_eq!(look(&mut observer, &[&watch], start, 4_000, 7_900), [nudge_at(4_000, 3)]);
        assert_eq!(look(&mut observer, &[&watch], start, 8_000, 8_000), [nudge_at(8_000, 4)]);
        watch.beat();
        assert_eq!(
            look(&mut observer, &[&watch], start, 8_100, 8_100),
            [Verdict::Resumed { shard: 0, nudges: 4 }]
        );
        // A new quiet spell counts from the last turn seen, from a first nudge.
        assert_eq!(look(&mut observer, &[&watch], start, 8_200, 9_000), []);
        assert_eq!(look(&mut observer, &[&watch], start, 9_100, 9_100), [nudge_at(1_000, 1)]);
    }

    #[test]
    fn the_wait_between_nudges_stops_growing() {
        assert_eq!(backoff(1), STALL_AFTER);
        assert_eq!(backoff(2), STALL_AFTER * 2);
        assert_eq!(backoff(3), STALL_AFTER * 4);
        assert_eq!(backoff(40), NUDGE_BACKOFF_MAX);
        assert_eq!(backoff(u64::MAX), NUDGE_BACKOFF_MAX);
    }

    #[test]
    fn a_turning_loop_and_an_unwatched_one_are_left_alone() {
        let turning = watched();
        let ended = Watch::default();
        let mut observer = Observer::default();
        let mut verdicts = Vec::new();
        let start = Instant::now();
        for ms in (0..5_000).step_by(100) {
            turning.beat();
            observer.check(&[&turning, &ended], start + Duration::from_millis(ms), &mut verdicts);
        }
        assert_eq!(verdicts, []);
        // A loop that ends and begins again is watched afresh.
        turning.end();
        assert_eq!(look(&mut observer, &[&turning, &ended], start, 5_000, 10_000), []);
        turning.thread.store(7, Ordering::Relaxed);
        assert_eq!(look(&mut observer, &[&turning, &ended], start, 10_100, 11_000), []);
        let verdicts = look(&mut observer, &[&turning, &ended], start, 11_100, 11_100);
        assert!(matches!(verdicts[..], [Verdict::Nudge { shard: 0, thread: 7, nth: 1, .. }]), "{verdicts:?}");
    }

    #[test]
    fn quiet_time_the_watchdog_did_not_see_is_pardoned() {
        let watch = watched();
        let mut observer = Observer::default();
        let start = Instant::now();
        assert_eq!(look(&mut observer, &[&watch], start, 0, 500), []);
        // The watchdog was away for five seconds (its own looks stopped):
        // the loop's quiet time before its return does not count...
        assert_eq!(look(&mut observer, &[&watch], start, 5_500, 6_400), []);
        // ...but a second after it, it does.
        assert_eq!(look(&mut observer, &[&watch], start, 6_500, 6_500), [nudge_at(1_000, 1)]);
        // A gap just short of OVERSLEPT is not a pardon.
        let watch = watched();
        let mut observer = Observer::default();
        let late = OVERSLEPT.as_millis() as u64 - 1;
        assert_eq!(look(&mut observer, &[&watch], start, 0, 0), []);
        let mut verdicts = Vec::new();
        observer.check(&[&watch], start + Duration::from_millis(late), &mut verdicts);
        observer.check(&[&watch], start + Duration::from_millis(1_000), &mut verdicts);
        assert_eq!(verdicts, [nudge_at(1_000, 1)]);
    }

    /// The mechanism itself: a thread asleep in a system call that nothing
    /// would end is woken by a nudge, with `EINTR`.
    #[test]
    fn a_nudge_ends_a_blocking_wait() {
        install_handler().unwrap();
        let mut pipe = [0; 2];
        // SAFETY: pipe fills the two descriptors.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        let (thread_tx, thread_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            thread_tx.send(current_thread()).unwrap();
            let mut byte = 0u8;
            // SAFETY: one byte into a local.
            let read = unsafe { libc::read(pipe[0], (&mut byte as *mut u8).cast(), 1) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            done_tx.send((read, errno)).unwrap();
        });
        let thread = thread_rx.recv().unwrap();
        // Nudge until the read ends: the first may come before the read began.
        let mut outcome = None;
        for _ in 0..200 {
            nudge(thread).unwrap();
            if let Ok(got) = done_rx.recv_timeout(Duration::from_millis(50)) {
                outcome = Some(got);
                break;
            }
        }
        if outcome.is_none() {
            // Let the reader go before failing, so the test ends.
            // SAFETY: one byte from a local.
            unsafe { libc::write(pipe[1], b"x".as_ptr().cast(), 1) };
        }
        reader.join().unwrap();
        assert_eq!(outcome, Some((-1, Some(libc::EINTR))), "the read was interrupted");
        // SAFETY: our own descriptors, closed once.
        unsafe {
            libc::close(pipe[0]);
            libc::close(pipe[1]);
        }
    }

    /// The wait the watchdog is for: `io_uring_enter` waiting for a
    /// completion with nothing in flight, which only a signal can end.
    #[test]
    fn a_nudge_ends_an_io_uring_wait() {
        install_handler().unwrap();
        let (thread_tx, thread_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let ring = io_uring::IoUring::new(4).unwrap();
            thread_tx.send(current_thread()).unwrap();
            let result = ring.submit_and_wait(1).map_err(|e| e.raw_os_error());
            done_tx.send(result).unwrap();
        });
        let thread = thread_rx.recv().unwrap();
        let mut outcome = None;
        for _ in 0..200 {
            nudge(thread).unwrap();
            if let Ok(got) = done_rx.recv_timeout(Duration::from_millis(50)) {
                outcome = Some(got);
                break;
            }
        }
        // On failure the waiter is left asleep; the test process ends anyway.
        assert_eq!(outcome, Some(Err(Some(libc::EINTR))), "the wait was interrupted");
    }

    /// glommio takes the interruption in its sleep as a spurious wake-up: a
    /// shard nudged many times while it sleeps carries on as if nothing
    /// happened (no panic, its timer still fires, its tasks still finish).
    #[test]
    fn a_sleeping_glommio_executor_survives_nudges() {
        install_handler().unwrap();
        let (thread_tx, thread_rx) = mpsc::channel();
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                thread_tx.send(current_thread()).unwrap();
                let started = Instant::now();
                glommio::timer::sleep(Duration::from_millis(300)).await;
                let (tx, rx) = glommio::channels::local_channel::new_bounded(1);
                glommio::spawn_local(async move { tx.send(7u32).await.unwrap() }).detach();
                (started.elapsed(), rx.recv().await)
            })
            .unwrap();
        let thread = thread_rx.recv().unwrap();
        let mut sent = 0;
        while sent < 30 && nudge(thread).is_ok() {
            sent += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        let (slept, got) = executor.join().unwrap();
        assert!(sent > 0);
        assert_eq!(got, Some(7));
        assert!(slept >= Duration::from_millis(300), "the timer was not cut short: {slept:?}");
    }
}
