//! hongbao-cli: one request to a hongbao server from the shell.
//!
//! Each subcommand opens a blocking connection to the main port, sends one
//! request (or, for `query`, every page; for `stats`, one STATS per shard-aware
//! port), and prints the answer: human text by default, or exactly one JSON
//! object with `--json`, which always has a `status` field so scripts can
//! branch on it: the status the server answered with, named by
//! `Status::name()` (a frame-level one such as "malformed_frame" included),
//! or "unknown_outcome" or "error" when no answer came (see below).
//!
//! Exit codes ([`EXIT_CODES`], also in `--help`):
//!
//! * 0: the server did what was asked.
//! * 1: the server refused (the status is printed: human text to stderr, JSON
//!   still to stdout).
//! * 2: the connection or the protocol failed before the request could have
//!   done anything: no connection, or the server answered with a frame-level
//!   status such as "malformed_frame" (it did not read the request). JSON
//!   status "error", or that frame-level status.
//! * 3: the request was sent and no answer came (the connection closed, the
//!   answer timed out, or the server ended the connection with an answer to
//!   no request, request id 0). Its outcome is unknown: a CREATE may have
//!   made an envelope and must not be repeated blindly; a GRAB or an OPEN
//!   sent again answers with the first one's outcome. JSON status
//!   "unknown_outcome". A separate code because it is the one failure a
//!   script must not answer by simply retrying.
//! * 64: the command line cannot be used (sysexits' EX_USAGE); with `--json`,
//!   status "error".

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use hongbao_client::{
    Client, ClientError, Created, EnvelopeId, EnvelopeKind, EnvelopeReport, Grabbed, Opened, Reply, Status,
};
use serde_json::{json, Value};

/// Exit code when the server refused the request.
const EXIT_REFUSED: u8 = 1;
/// Exit code when the connection or the protocol failed.
const EXIT_ERROR: u8 = 2;
/// Exit code when the request was sent and no answer came: its outcome is unknown.
const EXIT_UNKNOWN_OUTCOME: u8 = 3;
/// Exit code when the command line cannot be read (sysexits' EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// The exit codes, as `--help` shows them (the module doc says more).
const EXIT_CODES: &str = "\
Exit codes:
  0   the server did what was asked
  1   the server refused (its status is printed)
  2   no connection, or a protocol failure (e.g. a frame-level status such as
      malformed_frame): the request did nothing
  3   the request was sent and no answer came (hang-up, timeout): its outcome
      is unknown; a CREATE may have been made and must not be blindly
      repeated (GRAB and OPEN are safe to repeat). JSON status
      \"unknown_outcome\"
  64  the command line cannot be used";

#[derive(Debug, Parser)]
#[command(
    name = "hongbao-cli",
    version,
    about = "Send one request to a hongbao red-envelope server",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The server's main port.
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:7400",
        value_parser = host_port
    )]
    server: String,
    /// Print exactly one JSON object, always with a "status" field, instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait to connect and for each answer; at least 1.
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    timeout: u64,
    /// File holding the server's token (one line), presented with HELLO on
    /// every connection before the request.
    #[arg(long, global = true, value_name = "FILE")]
    auth_token_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that the server answers.
    Ping,
    /// Create an envelope of --total cents in --count shares.
    Create {
        /// The sending user's id (not 0).
        #[arg(long, value_name = "USER")]
        sender: u64,
        /// Money to put in, in cents.
        #[arg(long, value_name = "CENTS")]
        total: u64,
        /// Number of shares.
        #[arg(long, value_name = "N")]
        count: u32,
        /// Split into equal shares instead of random ("lucky") ones.
        #[arg(long)]
        fixed: bool,
        /// Seconds until the envelope expires; 0 takes the server's default.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        expires_in: u32,
    },
    /// Reserve one share of an envelope for a user.
    Grab {
        /// The envelope's id.
        #[arg(long, value_name = "ID")]
        envelope: u64,
        /// The grabbing user's id (not 0).
        #[arg(long, value_name = "USER")]
        user: u64,
    },
    /// Turn a user's reservation into a paid amount.
    Open {
        /// The envelope's id.
        #[arg(long, value_name = "ID")]
        envelope: u64,
        /// The opening user's id (not 0).
        #[arg(long, value_name = "USER")]
        user: u64,
    },
    /// Show an envelope's totals, state, best-luck user and every claim.
    Query {
        /// The envelope's id.
        #[arg(long, value_name = "ID")]
        envelope: u64,
    },
    /// Show each shard's counters and their totals, with requests by opcode
    /// and status and their latency (p50, p99).
    Stats,
}

// A binary root's modules resolve from src/bin/, so the path names the folder.
#[path = "hongbao-cli/stats.rs"]
mod stats;

/// `--server`: a host and a port, e.g. `127.0.0.1:7400`, `localhost:7400` or
/// `[::1]:7400`. A host alone is a usage error, not a resolver's "invalid
/// socket address" after the fact: there is no default port to guess.
fn host_port(value: &str) -> Result<String, String> {
    let expected = || format!("{value:?} is not HOST:PORT (e.g. 127.0.0.1:7400 or [::1]:7400)");
    let (host, port) = value.rsplit_once(':').ok_or_else(expected)?;
    // An IPv6 host must be bracketed, or its last group would read as the port.
    let host_ok = !host.is_empty() && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    if !host_ok || port.parse::<u16>().is_err() {
        return Err(expected());
    }
    Ok(value.to_string())
}

/// What a command prints: one JSON object, or text for a person.
#[derive(Debug)]
pub(crate) struct Outcome {
    status: Status,
    json: Value,
    human: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(usage_error(&e, std::env::args_os().any(|a| a == "--json"))),
    };
    ExitCode::from(run(&cli, &mut io::stdout().lock(), &mut io::stderr().lock()))
}

/// A command line that cannot be read: clap's message, and with `--json` the
/// one JSON object every run prints; exit [`EXIT_USAGE`], not 2, which
/// means the connection or the protocol failed. `--help` and `--version`
/// print and exit 0.
fn usage_error(e: &clap::Error, json: bool) -> u8 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    let _ = e.print();
    if json {
        let message = e.kind().as_str().unwrap_or("cannot read the command line");
        println!("{}", json!({ "status": "error", "error": message }));
    }
    EXIT_USAGE
}

/// Runs `cli` and prints to `out` and `err`; returns the exit code.
fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    // Printing errors (a closed pipe) are ignored: the exit code still tells.
    // The token file is the command line's to get right: read before any
    // connection, so a typo costs no round trip and says which file.
    let token = match read_token(cli) {
        Ok(token) => token,
        Err(message) => return usage_failure(cli, &message, out, err),
    };
    match execute(cli, token.as_deref()) {
        Ok(outcome) => {
            let ok = outcome.status == Status::Ok;
            if cli.json {
                let _ = writeln!(out, "{}", outcome.json);
            } else if ok {
                let _ = writeln!(out, "{}", outcome.human);
            } else {
                let _ = writeln!(err, "{}", outcome.human);
            }
            if ok {
                0
            } else if outcome.status.is_frame_level() {
                // malformed_frame, timeout and the like are the server ending
                // the connection over the frame, not refusing the request.
                EXIT_ERROR
            } else {
                EXIT_REFUSED
            }
        }
        Err(e) if e.outcome_unknown() => {
            let message = format!("{e}; {}", unknown_outcome_advice(&cli.command));
            let _ = writeln!(err, "hongbao-cli: {message}");
            if cli.json {
                let _ = writeln!(out, "{}", json!({ "status": "unknown_outcome", "error": message }));
            }
            EXIT_UNKNOWN_OUTCOME
        }
        Err(e) => {
            let _ = writeln!(err, "hongbao-cli: {e}");
            if cli.json {
                let _ = writeln!(out, "{}", json!({ "status": "error", "error": e.to_string() }));
            }
            EXIT_ERROR
        }
    }
}

/// What a person should know of a request sent and never answered.
fn unknown_outcome_advice(command: &Command) -> &'static str {
    match command {
        Command::Create { .. } => {
            "the CREATE was sent and its outcome is unknown: an envelope may have been made, \
             so do not repeat it blindly (check the sender's envelopes first)"
        }
        Command::Grab { .. } | Command::Open { .. } => {
            "the request was sent and its outcome is unknown; sending it again is safe \
             and answers with the first one's outcome"
        }
        Command::Ping | Command::Query { .. } | Command::Stats => {
            "the request was sent and no answer came; it changes nothing, so it is safe to repeat"
        }
    }
}

/// A command line that parsed but cannot be used (an unreadable token
/// file): `message` to stderr, and with `--json` the one JSON object; exit
/// [`EXIT_USAGE`].
fn usage_failure(cli: &Cli, message: &str, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let _ = writeln!(err, "hongbao-cli: {message}");
    if cli.json {
        let _ = writeln!(out, "{}", json!({ "status": "error", "error": message }));
    }
    EXIT_USAGE
}

/// The token of `--auth-token-file`, without its trailing newline; the
/// error names the file.
fn read_token(cli: &Cli) -> Result<Option<Vec<u8>>, String> {
    let Some(path) = &cli.auth_token_file else { return Ok(None) };
    hongbao_client::token::read_token_file(path)
        .map(Some)
        .map_err(|e| format!("cannot read --auth-token-file {}: {e}", path.display()))
}

fn execute(cli: &Cli, token: Option<&[u8]>) -> Result<Outcome, ClientError> {
    // The parser refused 0, which would otherwise mean "no time at all".
    let timeout = Duration::from_secs(cli.timeout);
    let mut client = Client::connect_timeout(cli.server.as_str(), timeout)?;
    if let Some(token) = token {
        let status = match client.authenticate(token) {
            Ok(status) => status,
            // Only the HELLO went out, nothing of the command: its outcome is
            // known (not made), so this is a failure to connect (exit 2),
            // not "sent and unanswered" with its advice for a CREATE.
            Err(e) if e.outcome_unknown() => {
                let source =
                    std::io::Error::other(format!("the HELLO with the token was not answered ({e})"));
                return Err(ClientError::Connect { addr: cli.server.clone(), source });
            }
            Err(e) => return Err(e),
        };
        if status != Status::Ok {
            return Ok(Outcome {
                status,
                json: json!({ "status": status.name() }),
                human: refused("hello", status),
            });
        }
    }
    Ok(match cli.command {
        Command::Ping => ping(client.ping()?, &cli.server),
        Command::Create { sender, total, count, fixed, expires_in } => {
            let kind = if fixed { EnvelopeKind::Fixed } else { EnvelopeKind::Random };
            let reply = client.create(sender, total, count, kind, expires_in)?;
            created(&reply, sender, total, count, kind)
        }
        Command::Grab { envelope, user } => {
            grabbed(&client.grab(EnvelopeId(envelope), user)?, envelope, user)
        }
        Command::Open { envelope, user } => opened(&client.open(EnvelopeId(envelope), user)?, envelope, user),
        Command::Query { envelope } => queried(&client.query_all(EnvelopeId(envelope))?, envelope),
        Command::Stats => stats::stats(&mut client, timeout, token)?,
    })
}

fn ping(status: Status, server: &str) -> Outcome {
    let human = if status == Status::Ok { format!("pong from {server}") } else { refused("ping", status) };
    Outcome { status, json: json!({ "status": status.name() }), human }
}

fn created(
    reply: &Reply<Option<Created>>,
    sender: u64,
    total: u64,
    count: u32,
    kind: EnvelopeKind,
) -> Outcome {
    let status = reply.status;
    let Some(c) = reply.body else {
        let json = json!({ "status": status.name(), "envelope": null });
        return Outcome { status, json, human: refused("create", status) };
    };
    let json = json!({
        "status": status.name(),
        "envelope": c.envelope.0,
        "shard": c.envelope.shard(),
        "expires_at_ms": c.expires_at_ms,
    });
    let human = format!(
        "created envelope {} on shard {}: {total} cents in {count} {} shares from sender {sender}, expires {}",
        c.envelope,
        c.envelope.shard(),
        kind.name(),
        time(c.expires_at_ms),
    );
    Outcome { status, json, human }
}

fn grabbed(reply: &Reply<Grabbed>, envelope: u64, user: u64) -> Outcome {
    let (status, g) = (reply.status, reply.body);
    // ok, already_grabbed and sold_out say something in their body
    // (PROTOCOL.md 7.4); every other status carries the protocol's zero
    // body (a frame-level one, none at all), and "no share held (0 shares
    // free)" would be made up.
    if !matches!(status, Status::Ok | Status::AlreadyGrabbed | Status::SoldOut) {
        let json = json!({ "status": status.name(), "envelope": envelope, "user": user });
        return Outcome { status, json, human: refused("grab", status) };
    }
    let json = json!({
        "status": status.name(),
        "envelope": envelope,
        "user": user,
        "hold_until_ms": g.hold_until_ms,
        "amount_cents": g.amount_cents,
        "shares_free": g.shares_free,
    });
    let detail = if g.amount_cents > 0 {
        format!("already opened for {} cents", g.amount_cents)
    } else if g.hold_until_ms > 0 {
        format!("share held until {}", time(g.hold_until_ms))
    } else {
        "no share held".to_string()
    };
    let human = match status {
        Status::Ok => format!("grabbed: {detail} ({} shares free)", g.shares_free),
        _ => format!("{}: {detail} ({} shares free)", refused("grab", status), g.shares_free),
    };
    Outcome { status, json, human }
}

fn opened(reply: &Reply<Opened>, envelope: u64, user: u64) -> Outcome {
    let (status, o) = (reply.status, reply.body);
    // Only an ok OPEN says something in its body: with every other status
    // amount and order are the protocol's zeros (PROTOCOL.md 7.5).
    if status != Status::Ok {
        let json = json!({ "status": status.name(), "envelope": envelope, "user": user });
        return Outcome { status, json, human: refused("open", status) };
    }
    let json = json!({
        "status": status.name(),
        "envelope": envelope,
        "user": user,
        "amount_cents": o.amount_cents,
        "order": o.order,
    });
    let human = format!("opened: {} cents (#{} to open)", o.amount_cents, o.order);
    Outcome { status, json, human }
}

fn queried(reply: &Reply<Option<EnvelopeReport>>, envelope: u64) -> Outcome {
    let status = reply.status;
    let Some(report) = &reply.body else {
        let json = json!({ "status": status.name(), "envelope": envelope });
        return Outcome { status, json, human: refused("query", status) };
    };
    let s = &report.summary;
    let claims: Vec<Value> = report
        .claims
        .iter()
        .map(|c| json!({ "user": c.user, "amount_cents": c.amount_cents, "order": c.order }))
        .collect();
    let json = json!({
        "status": status.name(),
        "envelope": s.envelope.0,
        "sender": s.sender,
        "total_cents": s.total_cents,
        "count": s.count,
        "paid_count": s.paid_count,
        "paid_cents": s.paid_cents,
        "remaining_cents": s.remaining_cents,
        "refunded_cents": s.refunded_cents,
        "reserved_count": s.reserved_count,
        "state": s.state.name(),
        "kind": s.kind.name(),
        "created_at_ms": s.created_at_ms,
        "expires_at_ms": s.expires_at_ms,
        "best_user": s.best_user,
        "best_amount_cents": s.best_amount_cents,
        "claims": claims,
    });
    let mut human = format!(
        "envelope {} (shard {}): {}, {}\n\
         \x20 sender      {}\n\
         \x20 total       {} cents in {} shares\n\
         \x20 paid        {} cents in {} shares\n\
         \x20 remaining   {} cents\n\
         \x20 refunded    {} cents\n\
         \x20 reserved    {} shares\n\
         \x20 created     {}\n\
         \x20 expires     {}\n",
        s.envelope,
        s.envelope.shard(),
        s.state.name(),
        s.kind.name(),
        s.sender,
        s.total_cents,
        s.count,
        s.paid_cents,
        s.paid_count,
        s.remaining_cents,
        s.refunded_cents,
        s.reserved_count,
        time(s.created_at_ms),
        time(s.expires_at_ms),
    );
    if s.best_user == 0 {
        human.push_str("  best luck   nobody yet\n");
    } else {
        human.push_str(&format!("  best luck   user {} with {} cents\n", s.best_user, s.best_amount_cents));
    }
    human.push_str(&format!(
        "claims ({}):\n  {:>6}  {:>20}  {:>12}",
        report.claims.len(),
        "order",
        "user",
        "cents"
    ));
    for c in &report.claims {
        human.push_str(&format!("\n  {:>6}  {:>20}  {:>12}", c.order, c.user, c.amount_cents));
    }
    Outcome { status, json, human }
}

pub(crate) fn refused(what: &str, status: Status) -> String {
    format!("{what} refused: {status}")
}

/// A Unix-ms time as UTC with how far it is from now, e.g.
/// "2026-01-01 01:00:00.000 UTC (in 3599 s)"; 0 means "never set".
fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".to_string();
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let relative = if ms >= now_ms {
        format!("in {} s", (ms - now_ms) / 1000)
    } else {
        format!("{} s ago", (now_ms - ms) / 1000)
    };
    format!("{} ({relative})", utc(ms))
}

/// Unix ms as "YYYY-MM-DD hh:mm:ss.mmm UTC".
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let (h, min, s) = (day_secs / 3600, day_secs % 3600 / 60, day_secs % 60);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02}.{:03} UTC", ms % 1000)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`), so the CLI needs no date crate.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{SocketAddr, TcpListener};
    use std::thread::JoinHandle;

    use clap::CommandFactory;
    use hongbao_client::{Claim, EnvelopeState, EnvelopeSummary};
    use hongbao_protocol::body::{GrabResponse, HelloResponse, StatsResponse};
    use hongbao_protocol::codec::write_response;
    use hongbao_protocol::{decode_frame, Opcode, Request};
    use zerocopy::little_endian::{U16, U32, U64};
    use zerocopy::{FromZeros, IntoBytes};

    use super::*;

    /// Serves one connection: each request is answered by `answer`.
    fn serve<F>(answer: F) -> (SocketAddr, JoinHandle<()>)
    where
        F: Fn(u64, &Request<'_>) -> Vec<u8> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = Vec::new();
            loop {
                while let Some(frame) = decode_frame(&buf).unwrap() {
                    let len = frame.wire_len();
                    let reply = answer(frame.request_id(), &Request::decode(&frame).unwrap());
                    stream.write_all(&reply).unwrap();
                    buf.drain(..len);
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
        (addr, handle)
    }

    fn response(opcode: Opcode, id: u64, status: Status, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        write_response(&mut out, opcode as u8, id, status, parts);
        out
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("hongbao-cli").chain(args.iter().copied())).unwrap()
    }

    /// Runs the CLI; returns the exit code, stdout and stderr.
    fn run_cli(args: &[&str]) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&cli(args), &mut out, &mut err);
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn every_flag_has_help_and_the_parser_is_sound() {
        Cli::command().debug_assert();
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                assert!(arg.get_help().is_some(), "{} --{} has no help", sub.get_name(), arg.get_id());
            }
        }
        let parsed = cli(&["create", "--sender", "1", "--total", "100", "--count", "2", "--fixed", "--json"]);
        assert!(parsed.json);
        assert_eq!(parsed.server, "127.0.0.1:7400");
        assert!(matches!(parsed.command, Command::Create { fixed: true, expires_in: 0, count: 2, .. }));
    }

    #[test]
    fn a_command_line_it_cannot_read_exits_64_and_help_exits_0() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("hongbao-cli").chain(args.iter().copied())).unwrap_err()
        };
        assert_eq!(usage_error(&parse(&["grab", "--bogus"]), false), EXIT_USAGE);
        assert_eq!(usage_error(&parse(&["--json", "grab"]), true), EXIT_USAGE, "a required flag missing");
        assert_eq!(usage_error(&parse(&["--help"]), false), 0);
        // A timeout of 0 seconds was silently 1; a server without a port
        // failed only when resolved (exit 2).
        assert_eq!(usage_error(&parse(&["--timeout", "0", "ping"]), false), EXIT_USAGE);
        for server in ["localhost", "::1", "host:", ":7400", "host:99999"] {
            assert_eq!(usage_error(&parse(&["--server", server, "ping"]), false), EXIT_USAGE, "{server}");
        }
        for server in ["localhost:7400", "10.0.0.1:1", "[::1]:7400"] {
            assert_eq!(cli(&["--server", server, "ping"]).server, server);
        }
        assert_ne!(EXIT_USAGE, EXIT_ERROR, "a usage error is not a connection failure");
    }

    #[test]
    fn times_print_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
        assert_eq!(utc(1_767_229_200_123), "2026-01-01 01:00:00.123 UTC");
        assert_eq!(utc(4_102_444_799_000), "2099-12-31 23:59:59.000 UTC");
        assert_eq!(time(0), "-");
    }

    #[test]
    fn open_and_query_outcomes() {
        let ok = opened(&Reply { status: Status::Ok, body: Opened { amount_cents: 123, order: 4 } }, 9, 1);
        assert_eq!(ok.human, "opened: 123 cents (#4 to open)");
        assert_eq!(ok.json["amount_cents"], 123);

        let summary = EnvelopeSummary {
            envelope: EnvelopeId::new(1, 1),
            sender: 7,
            total_cents: 300,
            count: 3,
            paid_count: 2,
            paid_cents: 250,
            remaining_cents: 50,
            refunded_cents: 0,
            reserved_count: 1,
            state: EnvelopeState::Active,
            kind: EnvelopeKind::Random,
            created_at_ms: 1000,
            expires_at_ms: 2000,
            best_user: 42,
            best_amount_cents: 200,
        };
        let claims = vec![
            Claim { user: 41, amount_cents: 50, order: 1 },
            Claim { user: 42, amount_cents: 200, order: 2 },
        ];
        let report = Reply { status: Status::Ok, body: Some(EnvelopeReport { summary, claims }) };
        let q = queried(&report, (1 << 48) | 1);
        for key in [
            "status",
            "envelope",
            "sender",
            "total_cents",
            "count",
            "paid_count",
            "paid_cents",
            "remaining_cents",
            "refunded_cents",
            "reserved_count",
            "state",
            "kind",
            "created_at_ms",
            "expires_at_ms",
            "best_user",
            "best_amount_cents",
            "claims",
        ] {
            assert!(q.json.get(key).is_some(), "query json lacks {key}");
        }
        assert_eq!(q.json["status"], "ok");
        assert_eq!(q.json["envelope"], (1u64 << 48) | 1);
        assert_eq!(q.json["state"], "active");
        assert_eq!(q.json["claims"][1], json!({ "user": 42, "amount_cents": 200, "order": 2 }));
        assert!(q.human.contains("best luck   user 42 with 200 cents"), "{}", q.human);
        assert!(q.human.contains("claims (2):"), "{}", q.human);
    }

    #[test]
    fn a_refusal_exits_1_and_prints_its_status() {
        let sold_out = |id: u64, _: &Request<'_>| {
            response(Opcode::Grab, id, Status::SoldOut, &[GrabResponse::new_zeroed().as_bytes()])
        };
        let (addr, server) = serve(sold_out);
        let server_arg = addr.to_string();
        let (code, out, err) = run_cli(&["grab", "--envelope", "5", "--user", "3", "--server", &server_arg]);
        server.join().unwrap();
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert!(err.starts_with("grab refused: sold_out"), "{err}");

        let (addr, server) = serve(sold_out);
        let server_arg = addr.to_string();
        let (code, out, _) =
            run_cli(&["--json", "grab", "--envelope", "5", "--user", "3", "--server", &server_arg]);
        server.join().unwrap();
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "sold_out");
        assert_eq!((v["hold_until_ms"].as_u64(), v["shares_free"].as_u64()), (Some(0), Some(0)));
    }

    /// A frame-level status (the server ending the connection over the
    /// frame) is a protocol failure, exit 2, not a refusal.
    #[test]
    fn a_frame_level_status_exits_2() {
        let malformed = |id: u64, _: &Request<'_>| response(Opcode::Grab, id, Status::MalformedFrame, &[]);
        let (addr, server) = serve(malformed);
        let server_arg = addr.to_string();
        let (code, _, err) = run_cli(&["grab", "--envelope", "5", "--user", "3", "--server", &server_arg]);
        server.join().unwrap();
        assert_eq!(code, 2, "{err}");
        // No body was sent, so none is printed.
        assert_eq!(err.trim_end(), "grab refused: malformed_frame");
    }

    /// Statuses whose body is the protocol's zero body print no body
    /// fields, in text or JSON; sold_out's zeros mean something, and stay.
    #[test]
    fn zero_bodies_are_not_printed_as_answers() {
        for status in [Status::MalformedFrame, Status::Busy, Status::NotFound] {
            let g = grabbed(&Reply { status, body: Grabbed::default() }, 5, 3);
            assert_eq!(g.human, format!("grab refused: {}", status.name()));
            assert!(
                g.json.get("shares_free").is_none() && g.json.get("hold_until_ms").is_none(),
                "{}",
                g.json
            );
            assert_eq!(g.json["status"], status.name());
            let o = opened(&Reply { status, body: Opened::default() }, 5, 3);
            assert!(o.json.get("amount_cents").is_none() && o.json.get("order").is_none(), "{}", o.json);
        }
        let sold_out = grabbed(&Reply { status: Status::SoldOut, body: Grabbed::default() }, 5, 3);
        assert_eq!(sold_out.json["shares_free"], 0);
    }

    /// A CREATE sent, then the connection closed with it unanswered: exit 3,
    /// "unknown_outcome", and a warning not to repeat it, unlike "cannot
    /// connect" (exit 2).
    #[test]
    fn a_request_sent_and_never_answered_exits_3_with_unknown_outcome() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // Reads the request (whatever it is), then hangs up unanswered.
            let mut request = [0u8; 56];
            stream.read_exact(&mut request).unwrap();
        });
        let args = ["--json", "create", "--sender", "1", "--total", "100", "--count", "2", "--server", &addr];
        let (code, out, err) = run_cli(&args);
        server.join().unwrap();
        assert_eq!(code, EXIT_UNKNOWN_OUTCOME, "{err}");
        assert!(err.contains("CREATE") && err.contains("do not repeat it blindly"), "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "unknown_outcome");
    }

    /// A server that takes the connection and never answers the HELLO: the
    /// command itself was never sent, so its outcome is known.
    #[test]
    fn a_hello_never_answered_exits_2_and_says_the_command_was_not_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // Reads the HELLO's header, then hangs up unanswered.
            let mut header = [0u8; 24];
            stream.read_exact(&mut header).unwrap();
            header[3]
        });
        let path = std::env::temp_dir().join(format!("hongbao-cli-hello-{}", std::process::id()));
        std::fs::write(&path, "a-token\n").unwrap();
        let args = [
            "--json",
            "--auth-token-file",
            path.to_str().unwrap(),
            "create",
            "--sender",
            "1",
            "--total",
            "100",
            "--count",
            "2",
            "--server",
            &addr,
        ];
        let (code, out, err) = run_cli(&args);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(server.join().unwrap(), Opcode::Hello as u8, "the HELLO came first");
        assert_eq!(code, EXIT_ERROR, "{err}");
        assert!(err.contains("HELLO") && !err.contains("CREATE"), "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "error");
    }

    /// A token file that is not there is a usage error naming it, found
    /// before connecting: the server here is a closed port, which would
    /// otherwise be the error (exit 2).
    #[test]
    fn a_missing_token_file_exits_64_naming_it_before_connecting() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let path = std::env::temp_dir().join(format!("hongbao-cli-no-token-{}", std::process::id()));
        let path_arg = path.to_str().unwrap();
        let (code, out, err) = run_cli(&["--json", "ping", "--server", &addr, "--auth-token-file", path_arg]);
        assert_eq!(code, EXIT_USAGE, "{err}");
        assert!(err.contains(path_arg), "{err}");
        assert!(!err.contains(&addr), "no connection was tried: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "error");
    }

    #[test]
    fn a_connection_failure_exits_2() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let (code, out, err) = run_cli(&["ping", "--json", "--server", &addr]);
        assert_eq!(code, 2);
        assert!(err.contains(&addr), "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "error");
    }

    #[test]
    fn stats_asks_every_shard_and_adds_them_up() {
        let shard = |shard_id: u16| {
            move |id: u64, request: &Request<'_>| {
                assert!(matches!(request, Request::Stats));
                let mut s = StatsResponse::new_zeroed();
                s.shard_id = U16::new(shard_id);
                s.shard_count = U16::new(2);
                s.requests = U64::new(10 + u64::from(shard_id));
                s.uptime_ms = U64::new(1000 * u64::from(shard_id + 1));
                response(Opcode::Stats, id, Status::Ok, &[s.as_bytes()])
            }
        };
        // A main port whose HELLO lists two shard ports, answered by the
        // shards `ids` say; returns the CLI's outcome.
        let stats_of = |ids: [u16; 2], args: &[&str]| {
            let (addr0, shard0) = serve(shard(ids[0]));
            let (addr1, shard1) = serve(shard(ids[1]));
            let ports: Vec<u8> = [addr0.port(), addr1.port()].iter().flat_map(|p| p.to_le_bytes()).collect();
            let (main, main_server) = serve(move |id, request| {
                assert!(matches!(request, Request::Hello { .. }));
                let mut h = HelloResponse::new_zeroed();
                h.version = hongbao_protocol::VERSION;
                h.shard_count = U16::new(2);
                h.max_body_len = U32::new(65_536);
                h.max_query_page = U32::new(1024);
                response(Opcode::Hello, id, Status::Ok, &[h.as_bytes(), &ports])
            });
            let main_arg = main.to_string();
            let outcome = run_cli(&[args, &["--server", &main_arg]].concat());
            for server in [main_server, shard0, shard1] {
                server.join().unwrap();
            }
            outcome
        };
        let (code, out, err) = stats_of([0, 1], &["stats", "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["shards"].as_array().unwrap().len(), 2);
        assert_eq!(v["shards"][1]["shard_id"], 1);
        assert_eq!(v["total"]["requests"], 21);
        assert_eq!(v["total"]["uptime_ms"], 2000);

        // Both ports answered by shard 0: not added up as two shards.
        let (code, _, err) = stats_of([0, 0], &["stats"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("but shard 0 answers it"), "{err}");
    }
}
