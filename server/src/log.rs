//! The server's log lines: one `log!` for every line it writes to stderr.
//!
//! `eprintln!` panics when stderr cannot be written (a closed pipe gives
//! EPIPE, since Rust ignores SIGPIPE), and the release build aborts on panic:
//! a log reader that went away (a pipe's far end, a restarted journald)
//! would take every shard down at its next line, mid-storm. A log line is
//! never worth the server, so a failed write is dropped. The line is
//! formatted and written in one call on a locked handle, so lines from
//! different shards do not interleave.

/// Writes one line to stderr, as `eprintln!` does, and ignores a failure.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}
