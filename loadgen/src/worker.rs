//! One worker: a glommio executor pinned to one core, with its own connections
//! to every shard, its own workload and its own figures; nothing is shared
//! with other workers but the start line and the progress counter.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hongbao_client::glommio_net::connect_sharded;
use hongbao_client::{Client, ClientError, EnvelopeId, EnvelopeReport, Status};

use crate::args::{Args, Scenario};
use crate::driver::{drive, DriveSettings, Timing, AFTER_END};
use crate::money::Ledger;
use crate::results::Recorder;
use crate::slowness::{Probe, Slowness};
use crate::stalls::Stalls;
use crate::violations::Violations;
use crate::workload::{ShardWork, WorkSettings, ACTIVE_VERIFIED_MAX, SETUP_REQUESTS_MAX};

/// What a worker hands back.
#[derive(Debug)]
pub struct WorkerOutcome {
    /// Its figures and violations.
    pub recorder: Recorder,
    /// Shards the server runs.
    pub shards: u16,
}

/// A worker that could not finish: why, and the money violations it had
/// found by then, which a failure must not hide.
#[derive(Debug, Default)]
pub struct WorkerFailure {
    /// What stopped it.
    pub why: String,
    /// Failed money checks up to that point.
    pub violations: Violations,
}

impl From<String> for WorkerFailure {
    fn from(why: String) -> WorkerFailure {
        WorkerFailure { why, violations: Violations::default() }
    }
}

/// Everything a worker needs to run.
#[derive(Clone, Debug)]
pub struct WorkerPlan {
    /// Index among workers.
    pub index: usize,
    /// The core it is pinned to.
    pub core: usize,
    /// Total workers.
    pub workers: usize,
    /// Flags.
    pub args: Args,
    /// All workers start together.
    pub start_line: Arc<Barrier>,
    /// Answers so far, for the progress line.
    pub progress: Arc<AtomicU64>,
}

/// Runs one worker to the end of the run and the final money check.
pub async fn run_worker(plan: WorkerPlan) -> Result<WorkerOutcome, WorkerFailure> {
    let args = &plan.args;
    if args.scenario == Scenario::Hiccup {
        plan.start_line.wait();
        return Ok(WorkerOutcome { recorder: hiccup(args, plan.core), shards: 0 });
    }
    // Every worker reaches the start line, even one that failed to set up, so
    // that none of the others waits forever.
    let setup = set_up(&plan).await;
    plan.start_line.wait();
    let (addrs, connections, mut works) = setup?;
    let shards = addrs.len() as u16;
    let mut recorder = Recorder::default();

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let timing =
        Timing { start, measure_from, stop_at: measure_from + Duration::from_secs_f64(args.duration) };
    let interval_ps = args.rate.map(|rate| {
        let connections = (plan.workers * connections.len()) as u128;
        (connections * 1_000_000_000_000 / u128::from(rate.max(1))).clamp(1, u128::from(u64::MAX)) as u64
    });
    let settings = DriveSettings {
        depth: args.depth,
        interval_ps,
        batch: Duration::from_micros(args.batch_us),
        phase: (plan.index, plan.workers),
        timing,
        after_end: AFTER_END,
        expires_in_secs: args.expires_in,
    };
    let driven = drive(connections, &mut works, &mut recorder, &settings, plan.progress.clone()).await;
    for work in &works {
        recorder.violations.merge(&work.violations);
        recorder.envelopes_created += work.envelopes_created;
        recorder.create_refused = recorder.create_refused.or(work.create_refused);
    }
    if let Err(why) = driven {
        return Err(WorkerFailure { why, violations: recorder.violations });
    }
    recorder.stalls_by_core.push((plan.core, recorder.stalls.clone()));

    // Read again (the run may have been long), and a failure to read it
    // keeps the violations found, like any other failure after the load.
    let token = match read_token(args) {
        Ok(token) => token,
        Err(why) => return Err(WorkerFailure { why, violations: recorder.violations }),
    };
    for (shard, work) in works.iter().enumerate() {
        // The run's sample of retired envelopes, and a few still open.
        let open = if args.verify_sample > 0 { ACTIVE_VERIFIED_MAX } else { 0 };
        let sample: Vec<&Ledger> = work.retired.iter().chain(work.active_ledgers().take(open)).collect();
        let expires_in = Duration::from_secs(u64::from(args.expires_in));
        match verify(addrs[shard], &token, &sample, expires_in, &mut recorder.violations) {
            Ok(Verified { verified, unverifiable }) => {
                recorder.envelopes_verified += verified;
                recorder.envelopes_unverifiable += unverifiable;
            }
            Err(why) => return Err(WorkerFailure { why, violations: recorder.violations }),
        }
    }
    Ok(WorkerOutcome { recorder, shards })
}

/// `--scenario hiccup`: for the warm-up and the measured period, runs a
/// fixed chunk of work over and over, reading the clock around each, and
/// counts the gaps between chunks (time the machine took the core away) and
/// the windows in which the chunk ran slow (see `slowness`). Nothing else
/// runs on this executor.
fn hiccup(args: &Args, core: usize) -> Recorder {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let stop_at = measure_from + Duration::from_secs_f64(args.duration);
    let mut stalls = Stalls::default();
    let mut slowness = Slowness::default();
    let mut probe = Probe::default();
    loop {
        let now = Instant::now();
        if now >= stop_at {
            stalls.close(stop_at.duration_since(start).as_nanos() as u64, false);
            break;
        }
        let measuring = now >= measure_from;
        if measuring {
            stalls.observe(now.duration_since(start).as_nanos() as u64, false);
        }
        probe.run();
        if measuring {
            let at = now.duration_since(measure_from).as_nanos() as u64;
            slowness.record(at, now.elapsed().as_nanos() as u64);
        }
    }
    let mut recorder = Recorder::default();
    recorder.stalls_by_core.push((core, stalls.clone()));
    recorder.slowness_by_core.push((core, slowness.summary()));
    recorder.stalls = stalls;
    recorder
}

/// Shard addresses, connections (shard, socket) and each shard's workload.
type Setup = (Vec<SocketAddr>, Vec<(usize, OwnedFd)>, Vec<ShardWork>);

/// The token of `--auth-token-file` (empty without one).
pub fn read_token(args: &Args) -> Result<Vec<u8>, String> {
    let Some(path) = &args.auth_token_file else { return Ok(Vec::new()) };
    hongbao_client::token::read_token_file(path)
        .map_err(|e| format!("--auth-token-file {}: {e}", path.display()))
}

/// Opens one connection and presents the token (nothing to present without
/// one). Blocking: this runs once, before the load.
fn connect(addr: SocketAddr, token: &[u8]) -> Result<OwnedFd, String> {
    let mut client = Client::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    if !token.is_empty() {
        match client.authenticate(token) {
            Ok(Status::Ok) => {}
            Ok(status) => return Err(format!("{addr}: HELLO answered {status} (check --auth-token-file)")),
            Err(e) => return Err(format!("{addr}: HELLO: {e}")),
        }
    }
    let stream = client.into_stream();
    // The ring waits for the socket itself; the blocking client's timeouts
    // would only get in the way.
    stream.set_read_timeout(None).and_then(|()| stream.set_write_timeout(None)).map_err(|e| e.to_string())?;
    Ok(OwnedFd::from(stream))
}

/// Learns the shard ports (HELLO), runs each shard's setup and opens every
/// connection.
async fn set_up(plan: &WorkerPlan) -> Result<Setup, String> {
    let args = &plan.args;
    let token = read_token(args)?;
    let discovery = connect_sharded(args.server, &token, 1)
        .await
        .map_err(|e| format!("cannot reach {}: {e}", args.server))?;
    let ports = discovery.shard_ports().to_vec();
    drop(discovery);
    let addrs: Vec<SocketAddr> = ports.iter().map(|p| SocketAddr::new(args.server.ip(), *p)).collect();
    let settings = WorkSettings {
        scenario: args.scenario,
        worker: plan.index as u64,
        in_flight: (args.depth * args.connections) as u32,
        seed: args.seed,
        query_every: args.query_every,
        retry_every: args.retry_every,
        hot_count: args.hot_count,
        hot_users: args.hot_users,
        cap_cents: args.share_cap,
        verify_sample: args.verify_sample,
    };
    let mut works: Vec<ShardWork> = (0..addrs.len() as u16).map(|s| ShardWork::new(&settings, s)).collect();
    for (work, addr) in works.iter_mut().zip(&addrs) {
        prepare(work, *addr, &token, args.expires_in)?;
    }
    // The load's connections are opened last, so none sits idle through the setup.
    let mut connections = Vec::new();
    for (shard, addr) in addrs.iter().enumerate() {
        for _ in 0..args.connections {
            connections.push((shard, connect(*addr, &token)?));
        }
    }
    Ok((addrs, connections, works))
}

/// Runs `work`'s setup (the query micro benchmark's pool) against the shard
/// at `addr`, one request at a time, before the clock starts. Blocking is
/// fine: the load has not begun.
fn prepare(work: &mut ShardWork, addr: SocketAddr, token: &[u8], expires_in: u32) -> Result<(), String> {
    let Some(mut tag) = work.next_setup_tag() else { return Ok(()) };
    let mut client = Client::connect(addr).map_err(|e| format!("setup: {e}"))?;
    if !token.is_empty() {
        client.authenticate(token).map_err(|e| format!("setup: {e}"))?;
    }
    let mut refused = None;
    for _ in 0..SETUP_REQUESTS_MAX {
        let answer = client.call(&tag.request(expires_in)).map_err(|e| format!("setup {addr}: {e}"))?;
        if answer.status != Status::Ok {
            refused = Some((tag.opcode(), answer.status));
        }
        work.on_answer(tag, &answer);
        match work.next_setup_tag() {
            Some(next) => tag = next,
            None => return Ok(()),
        }
    }
    let last =
        refused.map_or("none refused".to_string(), |(op, status)| format!("last refusal: {op:?} {status}"));
    Err(format!("setup {addr}: not done after {SETUP_REQUESTS_MAX} requests ({last})"))
}

/// What the final QUERY made of a sample.
#[derive(Debug, Default, PartialEq)]
struct Verified {
    /// Envelopes compared (a violation or not).
    verified: u64,
    /// Envelopes evicted after their expiry: nothing left to compare.
    unverifiable: u64,
}

/// QUERYs every envelope in `sample` (all claims) and compares it with what
/// the worker was told; envelopes were created to expire in `expires_in`.
/// Runs after the load, so blocking is fine here.
fn verify(
    addr: SocketAddr,
    token: &[u8],
    sample: &[&Ledger],
    expires_in: Duration,
    violations: &mut Violations,
) -> Result<Verified, String> {
    let mut verified = Verified::default();
    if sample.is_empty() {
        return Ok(verified);
    }
    let mut client = Client::connect(addr).map_err(|e| format!("verify: {e}"))?;
    if !token.is_empty() {
        client.authenticate(token).map_err(|e| format!("verify: {e}"))?;
    }
    for ledger in sample {
        let reply = match client.query_all(EnvelopeId(ledger.envelope)) {
            Ok(reply) => reply,
            // Pages that contradict their own summary, or totals that break
            // a money rule, are the server's money figures disagreeing with
            // themselves: a violation, and the rest of the sample is still
            // checked.
            Err(
                e @ (ClientError::TooManyClaims { .. }
                | ClientError::ClaimsMissing { .. }
                | ClientError::PageMismatch { .. }
                | ClientError::InconsistentPage { .. }
                | ClientError::ContractBroken { .. }),
            ) => {
                violations.push(format!("envelope {}: QUERY's pages disagree: {e}", ledger.envelope));
                verified.verified += 1;
                continue;
            }
            Err(e) => return Err(format!("verify: {e}")),
        };
        if judge(ledger, reply.status, reply.body.as_ref(), expires_in, Instant::now(), violations) {
            verified.verified += 1;
        } else {
            verified.unverifiable += 1;
        }
    }
    Ok(verified)
}

/// Judges the final QUERY's answer about `ledger` at `now`; false if the
/// envelope is unverifiable: not_found once its expiry has passed, which a
/// server that evicts after its retention answers rightly. A not_found
/// before the expiry is a lost envelope, a violation.
fn judge(
    ledger: &Ledger,
    status: Status,
    report: Option<&EnvelopeReport>,
    expires_in: Duration,
    now: Instant,
    violations: &mut Violations,
) -> bool {
    match (status, report) {
        (Status::Ok, Some(report)) => violations.extend(ledger.check_report(report)),
        (Status::NotFound, _) if ledger.has_expired(expires_in, now) => return false,
        (status, _) => violations.push(format!("envelope {}: QUERY answered {status}", ledger.envelope)),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_not_found_is_unverifiable_only_once_the_envelope_has_expired() {
        let ledger = Ledger::new(1, 100, 3, 7, 4);
        let expires_in = Duration::from_secs(60);
        let mut violations = Violations::default();
        let later = Instant::now() + expires_in + Duration::from_secs(1);
        assert!(!judge(&ledger, Status::NotFound, None, expires_in, later, &mut violations), "evicted");
        assert!(violations.is_empty(), "{:?}", violations.messages());
        assert!(judge(&ledger, Status::NotFound, None, expires_in, Instant::now(), &mut violations));
        assert!(violations.messages()[0].contains("QUERY answered not_found"), "{:?}", violations.messages());
        assert!(judge(&ledger, Status::Unavailable, None, expires_in, later, &mut violations));
        assert_eq!(violations.count(), 2, "any other refusal stays a violation, expired or not");
    }
}
