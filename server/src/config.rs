//! Command-line flags and the server configuration they make. Every limit is a
//! named default (see `engine::config`) that a flag can change.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::cores::{available_cores, check_cores, parse_core_list, CoresError};
use crate::engine::{self, EngineConfig};

/// Default main port address.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7400";
/// Default most connections one shard serves at once.
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;
/// Default most connections from one source address per shard.
pub const CONNECTIONS_PER_IP_MAX_DEFAULT: usize = 1_000;
/// Default most bytes a connection's receive buffer grows to: many pipelined
/// frames, and always at least two of the largest.
pub const READ_BUFFER_BYTES_DEFAULT: usize = 256 * 1024;
/// Smallest allowed receive buffer limit: two largest frames.
pub const READ_BUFFER_BYTES_MIN: usize = 2 * hongbao_protocol::limits::MAX_FRAME_LEN;
/// Default most requests a connection may have received and not yet had
/// answered: deep enough for any pipelining client (the load generator runs
/// 1,024 deep), small enough that one connection's batch is a bounded stall.
pub const IN_FLIGHT_MAX_DEFAULT: usize = 4_096;
/// Default seconds to authenticate.
pub const AUTH_TIMEOUT_SECS_DEFAULT: u64 = 10;
/// Default seconds to finish a frame once started.
pub const FRAME_TIMEOUT_SECS_DEFAULT: u64 = 10;
/// Default log records between snapshots (about 320 MB of log).
pub const SNAPSHOT_EVERY_DEFAULT: u64 = 5_000_000;
/// Default microseconds a socket loop polls after its last work.
pub const SPIN_US_DEFAULT: u64 = 50;
/// `--watchdog-ms`: see [`crate::watchdog`].
pub const WATCHDOG_MS_DEFAULT: u64 = 100;
/// Messages that may wait in each shard-to-shard channel.
pub const MESH_CHANNEL_SIZE: usize = 1024;

/// What an acknowledgement promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    /// Every change is in the shard's write-ahead log, written and synced,
    /// before its answer is sent: a crash (even kill -9 or power loss, on a
    /// disk that honours fdatasync) loses no acknowledged CREATE or OPEN.
    Sync,
    /// Memory only: nothing is written and nothing survives a restart. For
    /// benchmarks of the engine and network alone.
    None,
}

/// hongbao-server: a thread-per-core red envelope server.
///
/// Every shard is one glommio executor pinned to one CPU and owns its envelopes
/// alone. All shards serve the main port (SO_REUSEPORT); a request for another
/// shard's envelope is forwarded to it in batches. Each shard also has its own
/// shard-aware port, listed by HELLO, where a routing client reaches it directly.
#[derive(Debug, Clone, Parser)]
#[command(name = "hongbao-server", version, about, long_about = None)]
pub struct Args {
    /// Address of the main port, served by every shard.
    #[arg(long, default_value = LISTEN_DEFAULT, value_name = "HOST:PORT")]
    pub listen: SocketAddr,

    /// Number of shards. Default: one per core in --cores. More shards than
    /// cores run unpinned (useful for tests on small machines).
    #[arg(long, value_name = "N")]
    pub shards: Option<u16>,

    /// CPUs to pin shards to, e.g. "0-3" or "0,2". Default: every CPU.
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,

    /// First shard-aware port; shard i listens on PORT + i. Default: the main
    /// port + 1.
    #[arg(long, value_name = "PORT")]
    pub shard_port_base: Option<u16>,

    /// Directory for the write-ahead log (one subdirectory per shard).
    #[arg(long, default_value = "./data", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// sync: answer a change only once its log record is durable (recovered at
    /// start); none: memory only, nothing written or recovered.
    #[arg(long, value_enum, default_value_t = Durability::Sync)]
    pub durability: Durability,

    /// Take a snapshot of a shard after this many log records, then remove the
    /// log segments it covers; bounds recovery time and disk use. 0: never.
    #[arg(long, default_value_t = SNAPSHOT_EVERY_DEFAULT, value_name = "RECORDS")]
    pub snapshot_every: u64,

    /// Most shares one envelope may have.
    #[arg(long, default_value_t = engine::MAX_COUNT_DEFAULT, value_name = "N")]
    pub max_count: u32,

    /// Largest share of any envelope, in cents.
    #[arg(long, default_value_t = engine::SHARE_CAP_CENTS_DEFAULT, value_name = "CENTS")]
    pub share_cap: u64,

    /// Seconds a GRAB's reservation holds before the share returns to the envelope.
    #[arg(long, default_value_t = engine::RESERVATION_TTL_MS_DEFAULT / 1000, value_name = "SECS")]
    pub reservation_secs: u64,

    /// Expiry of an envelope whose CREATE asks for 0 seconds.
    #[arg(long, default_value_t = engine::EXPIRY_SECS_DEFAULT, value_name = "SECS")]
    pub default_expiry: u32,

    /// Longest expiry a CREATE may ask for.
    #[arg(long, default_value_t = engine::EXPIRY_SECS_MAX_DEFAULT, value_name = "SECS")]
    pub max_expiry: u32,

    /// Seconds an envelope stays queryable after it expires, before eviction.
    #[arg(long, default_value_t = engine::RETENTION_SECS_DEFAULT, value_name = "SECS")]
    pub retention: u32,

    /// Most envelopes one shard holds; past it CREATE answers server_full.
    #[arg(long, default_value_t = engine::ENVELOPES_MAX_DEFAULT, value_name = "N")]
    pub max_envelopes: u64,

    /// Most share slots one shard holds (the counts of its envelopes added up);
    /// past it CREATE answers server_full.
    #[arg(long, default_value_t = engine::CLAIMS_MAX_DEFAULT, value_name = "N")]
    pub max_claims: u64,

    /// Most connections one shard serves at once; more are told busy and
    /// closed at accept.
    #[arg(long, default_value_t = CONNECTIONS_MAX_DEFAULT, value_name = "N")]
    pub max_connections: usize,

    /// Most bytes a connection may have buffered unanswered (its receive
    /// buffer starts small and grows to this under pipelining); at least two
    /// of the largest frames. Bounds the requests in flight per connection,
    /// and (up to 1 MiB) the answers it gathers before writing them.
    #[arg(long, default_value_t = READ_BUFFER_BYTES_DEFAULT, value_name = "BYTES")]
    pub max_buffered_bytes: usize,

    /// Most requests a connection may have sent and not yet had answered; past
    /// it the server answers what it has and reads no more from that
    /// connection until the answers are out (TCP back-pressure).
    #[arg(long, default_value_t = IN_FLIGHT_MAX_DEFAULT, value_name = "N")]
    pub max_in_flight: usize,

    /// Largest frame body accepted, in bytes (at most the protocol's 65,536;
    /// HELLO reports it). A request with a larger body is answered
    /// frame_too_large as soon as its header arrives, and its connection closed.
    #[arg(long, default_value_t = hongbao_protocol::limits::MAX_BODY_LEN, value_name = "BYTES")]
    pub max_body_bytes: u32,

    /// Most connections one source address (an IPv4 address, or an IPv6
    /// /64) may hold on one shard; more are told busy and closed at accept.
    #[arg(long, default_value_t = CONNECTIONS_PER_IP_MAX_DEFAULT, value_name = "N")]
    pub max_connections_per_ip: usize,

    /// Microseconds a shard's socket loop keeps polling after its last work
    /// before it parks. Polling saves the wake-up (an interrupt, a VM exit on
    /// virtual machines) when requests arrive one at a time, at the price of a
    /// busy core while load lasts; 0 parks at once.
    #[arg(long, default_value_t = SPIN_US_DEFAULT, value_name = "MICROS")]
    pub spin_us: u64,

    /// Milliseconds a shard's socket loop may be late for its next turn (at
    /// once while it works, at its park's deadline while parked) before a
    /// watchdog thread signals the shard's thread, which ends a sleep that
    /// nothing woke (glommio 0.9 can park with work to do); each nudge is
    /// logged and counted. 0 turns the watchdog off.
    #[arg(long, default_value_t = WATCHDOG_MS_DEFAULT, value_name = "MILLIS")]
    pub watchdog_ms: u64,

    /// File holding the token clients must present in HELLO (one line). Without
    /// it the server trusts every connection and, in protected mode, listens
    /// only on loopback.
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// Allow listening beyond loopback without --auth-token-file (turns
    /// protected mode off). Anyone who reaches the port can then move money.
    #[arg(long)]
    pub allow_remote_without_auth: bool,

    /// Seconds a connection has to authenticate (when a token is set) before
    /// it is told timeout and closed.
    #[arg(long, default_value_t = AUTH_TIMEOUT_SECS_DEFAULT, value_name = "SECS")]
    pub auth_timeout: u64,

    /// Seconds a client has to finish a frame it started sending; a slower
    /// client (slowloris) is told timeout and closed. Idle connections
    /// between frames are kept. Also how long an answer waits for a client
    /// that does not read it before the connection is closed.
    #[arg(long, default_value_t = FRAME_TIMEOUT_SECS_DEFAULT, value_name = "SECS")]
    pub frame_timeout: u64,

    /// MiB of memory each shard allocates and writes at start, before it is
    /// ready, and keeps for its envelopes, so that a storm's first minutes
    /// take no page faults on fresh memory (costly on VMs that hand free
    /// pages back to the host). Size it to the shard's expected peak
    /// (about 420 bytes per envelope of 8 shares live at once); 0 turns it off.
    #[arg(long, default_value_t = 0, value_name = "MIB")]
    pub prefault_mib: u64,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9400).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<SocketAddr>,

    /// Seed for the random split (each shard mixes in its id). Default: from
    /// the clock.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// Where one shard runs and listens.
#[derive(Clone, Debug)]
pub struct ShardPlan {
    /// Shard index.
    pub id: u16,
    /// CPU to pin to; `None` runs unpinned.
    pub core: Option<usize>,
    /// Shard-aware port.
    pub port: u16,
}

/// The whole server's configuration, checked.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Main port address.
    pub listen: SocketAddr,
    /// One entry per shard.
    pub shards: Vec<ShardPlan>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// What an acknowledgement promises.
    pub durability: Durability,
    /// Log records between snapshots; 0 never.
    pub snapshot_every: u64,
    /// Engine settings (shard id filled in per shard).
    pub engine: EngineConfig,
    /// Connections per shard.
    pub max_connections: usize,
    /// Connections per source address per shard.
    pub max_connections_per_ip: usize,
    /// Requests in flight per connection.
    pub max_in_flight: usize,
    /// Largest frame body accepted.
    pub max_body_bytes: u32,
    /// Receive buffer per connection.
    pub read_buffer_bytes: usize,
    /// Spin before parking.
    pub spin: std::time::Duration,
    /// How late a socket loop may be before the watchdog nudges its thread;
    /// `None`: no watchdog.
    pub watchdog: Option<std::time::Duration>,
    /// Sizes of each shard's socket ring.
    pub ring: hongbao_uring::RingConfig,
    /// The credential HELLO must present.
    pub auth: crate::auth::Auth,
    /// Time to authenticate.
    pub auth_timeout: std::time::Duration,
    /// Time to finish a frame.
    pub frame_timeout: std::time::Duration,
    /// Bytes of heap each shard touches at start (`--prefault-mib`).
    pub prefault_bytes: u64,
    /// Metrics endpoint.
    pub metrics: Option<SocketAddr>,
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad --cores.
    #[error("--cores: {0}")]
    Cores(#[from] CoresError),
    /// Zero or too many shards.
    #[error("--shards {shards}: must be between 1 and {max}")]
    Shards { shards: u32, max: u16 },
    /// A shard port would be above 65535 or collide with the main port.
    #[error("shard-aware ports {first}..{last} do not fit (main port {main})")]
    Ports { first: u32, last: u32, main: u16 },
    /// The token file cannot be used.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// Protected mode: no token and a non-loopback address.
    #[error(
        "protected mode: refusing to listen on {listen} without --auth-token-file; set a token, listen on \
         127.0.0.1, or pass --allow-remote-without-auth"
    )]
    Protected { listen: SocketAddr },
    /// A limit of zero or out of its domain.
    #[error("{flag} {value}: {why}")]
    Limit { flag: &'static str, value: u64, why: &'static str },
}

impl Args {
    /// Turns flags into a checked configuration.
    pub fn into_config(self) -> Result<ServerConfig, ConfigError> {
        let available = available_cores();
        let cores = match &self.cores {
            Some(text) => parse_core_list(text)?,
            None => available.clone(),
        };
        check_cores(&cores, &available)?;
        let max = hongbao_protocol::limits::MAX_SHARDS;
        let shard_count = self.shards.map(u32::from).unwrap_or(cores.len() as u32);
        if shard_count == 0 || shard_count > u32::from(max) {
            return Err(ConfigError::Shards { shards: shard_count, max });
        }
        let pinned = shard_count as usize <= cores.len();
        let main = self.listen.port();
        let first = u32::from(self.shard_port_base.unwrap_or(main.saturating_add(1)));
        let last = first + shard_count - 1;
        if first == 0 || last > u32::from(u16::MAX) || (first..=last).contains(&u32::from(main)) {
            return Err(ConfigError::Ports { first, last, main });
        }
        let shards = (0..shard_count as u16)
            .map(|id| ShardPlan {
                id,
                core: pinned.then(|| cores[usize::from(id)]),
                port: (first + u32::from(id)) as u16,
            })
            .collect();
        check_limit("--max-count", u64::from(self.max_count), 1, 1_000_000)?;
        check_limit("--share-cap", self.share_cap, 1, u64::from(u32::MAX))?;
        check_limit("--reservation-secs", self.reservation_secs, 1, 86_400)?;
        check_limit("--max-expiry", u64::from(self.max_expiry), 1, 30 * 86_400)?;
        check_limit("--default-expiry", u64::from(self.default_expiry), 1, u64::from(self.max_expiry))?;
        check_limit("--max-envelopes", self.max_envelopes, 1, engine::SLOTS_MAX)?;
        check_limit("--max-claims", self.max_claims, 1, 1 << 40)?;
        check_limit("--max-connections", self.max_connections as u64, 1, 1 << 20)?;
        check_limit("--spin-us", self.spin_us, 0, 1_000_000)?;
        if self.watchdog_ms != 0 {
            // Below 20 ms a parked loop's own timer slack and a busy turn
            // would draw nudges; above a minute it would not be a watchdog.
            check_limit("--watchdog-ms", self.watchdog_ms, 20, 60_000)?;
        }
        check_limit("--max-connections-per-ip", self.max_connections_per_ip as u64, 1, 1 << 20)?;
        check_limit("--max-in-flight", self.max_in_flight as u64, 1, 1 << 20)?;
        // Room for the largest fixed body and a HELLO with the longest token.
        let body_min = 16 + u64::from(hongbao_protocol::limits::MAX_TOKEN_LEN);
        check_limit(
            "--max-body-bytes",
            u64::from(self.max_body_bytes),
            body_min,
            u64::from(hongbao_protocol::limits::MAX_BODY_LEN),
        )?;
        check_limit(
            "--max-buffered-bytes",
            self.max_buffered_bytes as u64,
            READ_BUFFER_BYTES_MIN as u64,
            64 << 20,
        )?;
        check_limit("--auth-timeout", self.auth_timeout, 1, 3_600)?;
        check_limit("--frame-timeout", self.frame_timeout, 1, 3_600)?;
        check_limit("--prefault-mib", self.prefault_mib, 0, crate::prefault::PREFAULT_MIB_MAX)?;
        let auth = match &self.auth_token_file {
            Some(path) => crate::auth::Auth::from_file(path)?,
            None => crate::auth::Auth::none(),
        };
        if !auth.required() && !self.listen.ip().is_loopback() && !self.allow_remote_without_auth {
            return Err(ConfigError::Protected { listen: self.listen });
        }
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        let engine = EngineConfig {
            shard_id: 0,
            max_count: self.max_count,
            share_cap_cents: self.share_cap,
            reservation_ttl_ms: self.reservation_secs * 1000,
            expiry_secs_default: self.default_expiry,
            expiry_secs_max: self.max_expiry,
            retention_secs: self.retention,
            envelopes_max: self.max_envelopes,
            claims_max: self.max_claims,
            seed,
        };
        Ok(ServerConfig {
            listen: self.listen,
            shards,
            data_dir: self.data_dir,
            durability: self.durability,
            snapshot_every: self.snapshot_every,
            engine,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_in_flight: self.max_in_flight,
            max_body_bytes: self.max_body_bytes,
            read_buffer_bytes: self.max_buffered_bytes,
            spin: std::time::Duration::from_micros(self.spin_us),
            watchdog: (self.watchdog_ms > 0).then(|| std::time::Duration::from_millis(self.watchdog_ms)),
            ring: ring_for(self.max_connections),
            auth,
            auth_timeout: std::time::Duration::from_secs(self.auth_timeout),
            frame_timeout: std::time::Duration::from_secs(self.frame_timeout),
            prefault_bytes: self.prefault_mib << 20,
            metrics: self.metrics,
        })
    }
}

fn check_limit(flag: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::Limit { flag, value, why: "too small" });
    }
    if value > max {
        return Err(ConfigError::Limit { flag, value, why: "too large" });
    }
    Ok(())
}

impl ServerConfig {
    /// The shard-aware ports in shard order.
    pub fn shard_ports(&self) -> Vec<u16> {
        self.shards.iter().map(|s| s.port).collect()
    }
}

/// The socket ring for a shard of `max_connections`: a completion queue with
/// room for two completions a connection (its receive's data and its end or
/// refill) and one per receive buffer, so that a turn in which every
/// connection speaks at once does not rely on the kernel's overflow list.
/// Bounded by what io_uring allows (a completion queue of at most 65,536).
fn ring_for(max_connections: usize) -> hongbao_uring::RingConfig {
    let ring = hongbao_uring::RingConfig::default();
    let completions = max_connections.saturating_mul(2).saturating_add(usize::from(ring.buffers));
    // The completion queue is four times the submission queue.
    let entries = (completions / 4).next_power_of_two().clamp(ring.entries as usize, RING_ENTRIES_MAX);
    hongbao_uring::RingConfig { entries: entries as u32, ..ring }
}

/// Most submission entries a shard's ring asks for (its completion queue is
/// four times that, io_uring's largest).
const RING_ENTRIES_MAX: usize = 16_384;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_has_room_for_every_connection_s_completions() {
        let default = hongbao_uring::RingConfig::default();
        assert_eq!(ring_for(1).entries, default.entries, "never below the default");
        for connections in [1, 1_000, 10_000, 30_000] {
            let ring = ring_for(connections);
            assert!(ring.entries.is_power_of_two());
            assert!(
                ring.entries as usize * 4 >= connections * 2 + usize::from(ring.buffers),
                "{connections}"
            );
        }
        assert_eq!(ring_for(1 << 20).entries as usize, RING_ENTRIES_MAX, "bounded by io_uring's largest");
        assert_eq!(ring_for(10_000).buffers, default.buffers);
    }

    /// The example systemd unit's command line is one the server accepts
    /// (its token file replaced by a real one, its cores by this machine's).
    #[test]
    fn the_example_unit_starts() {
        let unit = include_str!("../../tuning/hongbao.service");
        let line = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line");
        let token = std::env::temp_dir().join(format!("hongbao-unit-token-{}", std::process::id()));
        std::fs::write(&token, "s3cret\n").unwrap();
        let mut args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        assert!(args[0].ends_with("/hongbao-server"), "{line}");
        for i in 1..args.len() {
            match args[i - 1].as_str() {
                "--auth-token-file" => args[i] = token.display().to_string(),
                "--cores" => args[i] = "0".to_string(),
                _ => {}
            }
        }
        let config = Args::try_parse_from(&args)
            .map_err(|e| e.to_string())
            .and_then(|a| a.into_config().map_err(|e| e.to_string()));
        std::fs::remove_file(&token).unwrap();
        let config = config.unwrap_or_else(|e| panic!("the unit's ExecStart is refused: {e}\n{line}"));
        assert!(!config.listen.ip().is_loopback(), "the unit serves the network");
    }
}
