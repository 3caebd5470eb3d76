//! The server's log lines: one `log!` for every line it writes to stderr,
//! written by one writer thread so that stderr can never stop a shard.
//!
//! Two ways stderr can hurt a server that writes to it directly. A closed
//! pipe gives EPIPE (Rust ignores SIGPIPE), on which `eprintln!` panics and
//! the release build aborts every shard. And a pipe that is open but not read
//! (a hung log shipper) fills after 64 KiB, and then the write blocks the
//! shard's thread, with all its connections, until someone reads. So a shard
//! only queues its line (bounded, without waiting); the writer thread does the
//! blocking write. A full queue drops the line and counts it, and the writer
//! says how many were dropped once it can write again. A failed write is
//! dropped too: a log line is never worth the server.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Lines queued for the writer before further lines are dropped.
pub const LOG_QUEUE_LINES: usize = 1024;
/// How long [`flush`] waits for the writer (at exit, a stderr nobody reads
/// must not keep the process from exiting).
pub const FLUSH_WAIT_MAX: Duration = Duration::from_secs(1);

/// Writes one line to stderr, as `eprintln!` does, through the writer thread.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(::std::format_args!($($arg)*))
    };
}

/// Queues one line for stderr. Never blocks and never fails: a full queue
/// drops it (and counts it).
pub fn line(args: fmt::Arguments<'_>) {
    match stderr_log() {
        Some(log) => log.line(args.to_string()),
        // No writer thread could be started: write here, as before.
        None => write_line(&mut io::stderr().lock(), &args.to_string()),
    }
}

/// Starts the writer thread now, from the calling thread: call it first in
/// `main`, so that the writer does not start (lazily) on a shard's thread,
/// whose pinning to a core it would inherit.
pub fn start() {
    let _ = stderr_log();
}

/// Waits, at most [`FLUSH_WAIT_MAX`], until every line queued so far is
/// written. Call before the process exits: the writer thread dies with it.
pub fn flush() {
    if let Some(Some(log)) = STDERR.get() {
        log.flush(FLUSH_WAIT_MAX);
    }
}

/// Lines dropped so far because stderr was not being read.
pub fn dropped() -> u64 {
    STDERR.get().and_then(Option::as_ref).map_or(0, Log::dropped)
}

static STDERR: OnceLock<Option<Log>> = OnceLock::new();

fn stderr_log() -> Option<&'static Log> {
    STDERR.get_or_init(|| Log::start(LOG_QUEUE_LINES, io::stderr()).ok()).as_ref()
}

enum Message {
    Line(String),
    /// Answered once every line queued before it has been written.
    Flush(mpsc::Sender<()>),
}

/// A bounded queue of lines and the thread that writes them to a sink.
struct Log {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl Log {
    fn start(capacity: usize, mut sink: impl Write + Send + 'static) -> io::Result<Log> {
        let (queue, lines) = mpsc::sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let seen = dropped.clone();
        std::thread::Builder::new().name("log".into()).spawn(move || {
            let mut told = 0;
            // Says how many lines were dropped since it last said so.
            let mut tell = |sink: &mut dyn Write| {
                let now = seen.load(Ordering::Relaxed);
                if now > told {
                    let n = now - told;
                    write_line(
                        sink,
                        &format!("hongbao-server: {n} log line(s) dropped: stderr was not being read"),
                    );
                    told = now;
                }
            };
            for message in lines {
                match message {
                    Message::Line(line) => {
                        tell(&mut sink);
                        write_line(&mut sink, &line);
                    }
                    Message::Flush(done) => {
                        tell(&mut sink);
                        let _ = done.send(());
                    }
                }
            }
        })?;
        Ok(Log { queue, dropped })
    }

    fn line(&self, line: String) {
        if self.queue.try_send(Message::Line(line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let (done, written) = mpsc::channel();
        let mut message = Message::Flush(done);
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
        let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// One line in one call (on a locked handle for stderr), so lines never
/// interleave; a failure is dropped.
fn write_line(sink: &mut (impl Write + ?Sized), line: &str) {
    let _ = writeln!(sink, "{line}");
    let _ = sink.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A sink that blocks every write until the test lets it go, as a pipe
    /// nobody reads does.
    #[derive(Clone)]
    struct Held {
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Held {
        fn new() -> Held {
            Held { gate: Arc::new((Mutex::new(false), std::sync::Condvar::new())), out: Arc::default() }
        }
        fn release(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }
        fn text(&self) -> String {
            String::from_utf8(self.out.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Held {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut open = self.gate.0.lock().unwrap();
            while !*open {
                open = self.gate.1.wait(open).unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_sink_that_does_not_take_lines_never_blocks_the_caller_and_drops_are_told() {
        let sink = Held::new();
        let log = Log::start(4, sink.clone()).unwrap();
        // The writer takes one line and blocks in it; four more fill the
        // queue; the rest are dropped. None of these calls may wait.
        for i in 0..20 {
            log.line(format!("line {i}"));
        }
        let dropped = log.dropped();
        assert!((15..=16).contains(&dropped), "dropped {dropped}");
        // A flush cannot get in while the queue is full: it gives up.
        log.flush(Duration::from_millis(50));
        sink.release();
        log.flush(Duration::from_secs(30));
        log.line("after".to_string());
        log.flush(Duration::from_secs(30));
        assert_eq!(log.dropped(), dropped, "nothing dropped once the sink takes lines");
        let text = sink.text();
        assert!(text.ends_with("after\n"), "{text}");
        // Every drop is told (in one note or, if the writer looked while they
        // were still happening, in several), and every other line is kept.
        let told: u64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("hongbao-server: "))
            .map(|l| l.split(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(told, dropped, "{text}");
        let kept = text.lines().filter(|l| l.starts_with("line ")).count() as u64;
        assert_eq!(kept + dropped, 20, "{text}");
    }

    #[test]
    fn flush_waits_for_every_line_queued_before_it() {
        let sink = Held::new();
        sink.release();
        let log = Log::start(LOG_QUEUE_LINES, sink.clone()).unwrap();
        for i in 0..100 {
            log.line(format!("line {i}"));
        }
        log.flush(Duration::from_secs(30));
        assert_eq!(sink.text().lines().count(), 100);
        assert_eq!(log.dropped(), 0);
    }
}
