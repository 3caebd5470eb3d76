//! Command-line flags of `hongbao-loadgen`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Most requests in flight on one connection (the client pipeline's bound).
pub const DEPTH_MAX: usize = hongbao_client::pipeline::MAX_IN_FLIGHT;
/// Most connections per shard per worker.
pub const CONNECTIONS_MAX: usize = 4096;
/// Longest measured period, seconds (a day).
pub const DURATION_SECS_MAX: u64 = 86_400;
/// Longest warm-up, seconds.
pub const WARMUP_SECS_MAX: u64 = 3_600;

/// What traffic to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// The Spring Festival peak: envelopes created and opened at 6M:48M a
    /// minute, realistic group sizes, several users racing per envelope, every
    /// grab followed by its open, periodic QUERYs.
    Storm,
    /// One envelope with a huge count and 100,000 users racing for it, again
    /// and again (one per shard and worker: an envelope lives on one shard,
    /// and each worker drives its own).
    Hot,
    /// Fresh GRABs only, on large envelopes: reservations, never opened
    /// (they lapse back to the envelope on the server).
    Grab,
    /// GRAB then OPEN of fresh users on large envelopes: the paying path.
    Open,
    /// QUERY (totals and a page of claims) of a pool of 64 envelopes per
    /// shard with 16 paid claims each; the pool is built before the clock
    /// starts, so the figures are QUERYs only.
    Query,
    /// PING.
    Ping,
    /// No server and no traffic: run a fixed chunk of work over and over on
    /// every core of --cores for --duration, and count how long the machine
    /// took each core away (see `stalls`) and how often it ran the chunk at
    /// half speed or worse (see `slowness`). Run it before a benchmark: no
    /// load generator's tail can beat it.
    Hiccup,
}

impl Scenario {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Storm => "storm",
            Scenario::Hot => "hot",
            Scenario::Grab => "grab",
            Scenario::Open => "open",
            Scenario::Query => "query",
            Scenario::Ping => "ping",
            Scenario::Hiccup => "hiccup",
        }
    }
}

/// hongbao-loadgen: drives a hongbao server and checks the money while it runs.
///
/// Closed loop by default: every connection keeps --depth requests in flight.
/// With --rate it runs open loop: requests are sent on a fixed schedule and each
/// latency counts from when its request was due, so a stalled server cannot
/// hide its stalls (coordinated omission).
#[derive(Debug, Clone, Parser)]
#[command(name = "hongbao-loadgen", version, about, long_about = None)]
pub struct Args {
    /// Main address of the server (a name is looked up once, its first
    /// address used); shard-aware ports are learned from HELLO.
    #[arg(long, default_value = "127.0.0.1:7400", value_name = "HOST:PORT", value_parser = parse_server)]
    pub server: SocketAddr,

    /// Traffic to send.
    #[arg(long, value_enum, default_value_t = Scenario::Storm)]
    pub scenario: Scenario,

    /// CPUs to run workers on, one pinned executor each, e.g. "1" or "2-3".
    /// Default: the last CPU.
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,

    /// Connections per shard, per worker.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub connections: usize,

    /// Requests in flight per connection (1 = not pipelined).
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub depth: usize,

    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub duration: f64,

    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub warmup: f64,

    /// Open loop: requests per second in total, over all workers and
    /// connections. Without it the load is closed loop.
    #[arg(long, value_name = "N")]
    pub rate: Option<u64>,

    /// Open loop: a connection's requests that fall due within this many
    /// microseconds of the first go out in one write (the wait counts in
    /// their latency, which runs from when each was due). One write per
    /// request would cost the server and the load generator a system call
    /// for every few requests at millions a second. 0 writes every turn.
    #[arg(long, default_value_t = 20, value_name = "MICROS")]
    pub batch_us: u64,

    /// Write every figure as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the latency percentile curve and throughput over time to FILE
    /// (.svg or .png, drawn by the load generator itself).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Seed of the workload's random choices (each worker mixes in its index).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,

    /// Storm: one QUERY per this many GRABs.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub query_every: u64,

    /// Every scenario that opens (storm, hot, open, query's pool): one paid
    /// user in N (picked by a hash of the user) taps again, a GRAB and an
    /// OPEN, as users and retrying clients do; the money checks require both
    /// to name the share already paid. 0: no repeats.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub retry_every: u64,

    /// Hot: shares of each hot envelope (the server's --max-count must allow it).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub hot_count: u32,

    /// Hot: users racing for each hot envelope.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub hot_users: u64,

    /// Seconds until the envelopes the load creates expire. Keep it short for
    /// long runs: a server holds envelopes until expiry plus its --retention.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub expires_in: u32,

    /// Largest share the server allows, in cents (its --share-cap); the money
    /// checks flag any share above it.
    #[arg(long, default_value_t = 20_000, value_name = "CENTS")]
    pub share_cap: u64,

    /// Envelopes per shard and worker compared with QUERY at the end: a
    /// uniform sample of those finished over the whole run, plus up to 8
    /// still open (at most 10,000: each is kept in memory until then, up to
    /// 16 KiB apiece; 0: no final QUERY).
    #[arg(long, default_value_t = 200, value_name = "N", value_parser = verify_sample)]
    pub verify_sample: usize,

    /// File holding the server's token (one line), presented with HELLO on
    /// every connection.
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// Flags that cannot work together or are out of range.
pub fn check(args: &Args) -> Result<(), String> {
    if args.depth == 0 || args.depth > DEPTH_MAX {
        return Err(format!("--depth {} must be between 1 and {DEPTH_MAX}", args.depth));
    }
    if args.connections == 0 || args.connections > CONNECTIONS_MAX {
        return Err(format!("--connections {} must be between 1 and {CONNECTIONS_MAX}", args.connections));
    }
    if !(args.duration > 0.0 && args.duration <= DURATION_SECS_MAX as f64) {
        return Err(format!("--duration {} must be in (0, {DURATION_SECS_MAX}]", args.duration));
    }
    if !(args.warmup >= 0.0 && args.warmup <= WARMUP_SECS_MAX as f64) {
        return Err(format!("--warmup {} must be in [0, {WARMUP_SECS_MAX}]", args.warmup));
    }
    if args.rate == Some(0) {
        return Err("--rate must be above 0".into());
    }
    if args.scenario == Scenario::Hiccup && (args.plot.is_some() || args.rate.is_some()) {
        return Err("--scenario hiccup sends nothing: --plot and --rate do not apply".into());
    }
    if args.query_every == 0 || args.hot_count == 0 || args.hot_users == 0 || args.expires_in == 0 {
        return Err("--query-every, --hot-count, --hot-users and --expires-in must be above 0".into());
    }
    if args.share_cap == 0 {
        return Err("--share-cap must be at least 1 cent: every share is".into());
    }
    if args.hot_users > HOT_USERS_MAX {
        return Err(format!("--hot-users {} must be at most {HOT_USERS_MAX}", args.hot_users));
    }
    if args.batch_us > BATCH_US_MAX {
        return Err(format!("--batch-us {} must be at most {BATCH_US_MAX}", args.batch_us));
    }
    // Checked before the run, not after it: a long run must not end on a
    // file name it cannot write.
    if let Some(plot) = &args.plot {
        if !matches!(plot.extension().and_then(|e| e.to_str()), Some("svg" | "png")) {
            return Err(format!("--plot {}: the file name must end in .svg or .png", plot.display()));
        }
    }
    Ok(())
}

/// `--server`: an address, or a host name with a port, looked up once.
///
/// An IPv4 address is preferred where the name has one: the server's default
/// listens on 127.0.0.1, and `localhost` often resolves to `::1` first.
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?} is not HOST:PORT that resolves: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// Checks, before the run, that `--json` and `--plot` can be written: a
/// long run must not end on a missing directory. A file that did not exist
/// is made and removed again.
pub fn check_outputs(args: &Args) -> Result<(), String> {
    for (flag, path) in [("--json", &args.json), ("--plot", &args.plot)] {
        let Some(path) = path else { continue };
        let fail = |e: std::io::Error| format!("{flag} {}: {e}", path.display());
        match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
            // Made here, so removed here: nothing else can be in its place.
            Ok(_) => std::fs::remove_file(path).map_err(fail)?,
            // There already (a file, or a link): it must open for writing,
            // untouched. A link to a file not made yet is left to the run.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if path.exists() {
                    std::fs::OpenOptions::new().write(true).open(path).map_err(fail)?;
                }
            }
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(())
}

/// The CPUs of a `--cores` list ("1", "0,2", "2-3"), each one available
/// and named once: two busy-polling workers on one core would halve each
/// other and measure the sharing, not the server.
pub fn parse_cores(text: &str, available: &[usize]) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || format!("--cores: cannot read {item:?}");
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if b < a || b - a > 1024 {
            return Err(bad());
        }
        for core in a..=b {
            if cores.contains(&core) {
                return Err(format!("--cores: core {core} is named twice"));
            }
            cores.push(core);
        }
    }
    if let Some(missing) = cores.iter().find(|c| !available.contains(c)) {
        return Err(format!("--cores: core {missing} is not available (available: {available:?})"));
    }
    if cores.is_empty() {
        return Err("--cores: empty".into());
    }
    Ok(cores)
}

/// Most users racing for one hot envelope: its ledger holds 8 bytes a
/// racer (80 MB at this bound), per shard and worker.
pub const HOT_USERS_MAX: u64 = 10_000_000;
/// Longest open-loop batching window, microseconds.
pub const BATCH_US_MAX: u64 = 1_000_000;

/// Most envelopes per shard and worker kept for the final QUERY.
pub const VERIFY_SAMPLE_MAX: usize = 10_000;

fn verify_sample(text: &str) -> Result<usize, String> {
    let n: usize = text.parse().map_err(|e| format!("{e}"))?;
    if n > VERIFY_SAMPLE_MAX {
        return Err(format!("at most {VERIFY_SAMPLE_MAX}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<(), String> {
        check(&Args::try_parse_from(std::iter::once("hongbao-loadgen").chain(flags.iter().copied())).unwrap())
    }

    #[test]
    fn the_verify_sample_is_bounded() {
        assert!(Args::try_parse_from(["hongbao-loadgen", "--verify-sample", "10000"]).is_ok());
        assert!(Args::try_parse_from(["hongbao-loadgen", "--verify-sample", "10001"]).is_err());
    }

    #[test]
    fn flags_that_would_fail_the_run_late_are_refused_before_it() {
        assert!(parse(&["--share-cap", "0"]).unwrap_err().contains("--share-cap"));
        assert_eq!(parse(&["--share-cap", "1"]), Ok(()));
        assert!(parse(&["--hot-users", "10000001"]).unwrap_err().contains("--hot-users"));
        assert_eq!(parse(&["--hot-users", "10000000"]), Ok(()));
        assert!(parse(&["--batch-us", "1000001"]).unwrap_err().contains("--batch-us"));
        assert!(parse(&["--plot", "run.jpg"]).unwrap_err().contains(".svg or .png"));
        assert!(parse(&["--plot", "run"]).is_err());
        assert_eq!(parse(&["--plot", "run.svg"]), Ok(()));
    }

    #[test]
    fn the_server_may_be_named_by_host() {
        let args = Args::try_parse_from(["hongbao-loadgen", "--server", "localhost:7405"]).unwrap();
        assert!(args.server.ip().is_loopback() && args.server.port() == 7405, "{}", args.server);
        assert_eq!(parse_server("127.0.0.1:7400"), Ok("127.0.0.1:7400".parse().unwrap()));
        assert!(parse_server("localhost").is_err(), "a port is needed");
        assert!(parse_server("localhost:x").is_err());
    }

    #[test]
    fn outputs_that_cannot_be_written_are_refused_before_the_run() {
        let outputs = |json: &str, plot: &str| {
            let args = Args::try_parse_from(["hongbao-loadgen", "--json", json, "--plot", plot]).unwrap();
            check_outputs(&args)
        };
        let dir = std::env::temp_dir().join(format!("hongbao-loadgen-outputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (json, plot) = (dir.join("run.json"), dir.join("run.svg"));
        assert_eq!(outputs(json.to_str().unwrap(), plot.to_str().unwrap()), Ok(()));
        assert!(!json.exists() && !plot.exists(), "the check leaves nothing behind");
        let missing = dir.join("missing").join("run.json");
        let error = outputs(missing.to_str().unwrap(), plot.to_str().unwrap()).unwrap_err();
        assert!(error.starts_with("--json") && error.contains("missing"), "{error}");
        let error = outputs(json.to_str().unwrap(), dir.join("missing").join("run.svg").to_str().unwrap());
        assert!(error.unwrap_err().starts_with("--plot"));
        // An existing file is kept as it is until the run writes it.
        std::fs::write(&json, b"earlier").unwrap();
        assert_eq!(outputs(json.to_str().unwrap(), plot.to_str().unwrap()), Ok(()));
        assert_eq!(std::fs::read(&json).unwrap(), b"earlier");
        // A link to a file the run has not made yet stays a link.
        let link = dir.join("latest.json");
        std::os::unix::fs::symlink(dir.join("later.json"), &link).unwrap();
        assert_eq!(outputs(link.to_str().unwrap(), plot.to_str().unwrap()), Ok(()));
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(!dir.join("later.json").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cores_are_read_once_each_and_must_exist() {
        let available = [0, 1, 2, 3];
        assert_eq!(parse_cores("1", &available), Ok(vec![1]));
        assert_eq!(parse_cores("0, 2-3", &available), Ok(vec![0, 2, 3]));
        assert!(parse_cores("0,0", &available).unwrap_err().contains("core 0 is named twice"));
        assert!(parse_cores("0-2,1", &available).unwrap_err().contains("core 1 is named twice"));
        assert!(parse_cores("4", &available).unwrap_err().contains("not available"));
        assert!(parse_cores("3-1", &available).is_err());
        assert!(parse_cores("x", &available).is_err());
        assert!(parse_cores(",", &available).unwrap_err().contains("empty"));
    }

    #[test]
    fn hiccup_takes_no_traffic_flags() {
        assert_eq!(parse(&["--scenario", "hiccup", "--cores", "0"]), Ok(()));
        assert!(parse(&["--scenario", "hiccup", "--plot", "x.png"]).is_err());
        assert!(parse(&["--scenario", "hiccup", "--rate", "1000"]).is_err());
        assert_eq!(parse(&["--scenario", "storm", "--plot", "x.png", "--rate", "1000"]), Ok(()));
    }
}
