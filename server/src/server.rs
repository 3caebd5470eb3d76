//! Starting the shards, reporting when they listen, and stopping them on a
//! signal.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::{ServerConfig, MESH_CHANNEL_SIZE};
use crate::shard::run_shard;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A port is taken.
    #[error("cannot listen on {addr}: {source} (is another server running? choose another --listen or --shard-port-base)")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    /// glommio could not start an executor.
    #[error("cannot start shard {shard}: {source} (io_uring must be enabled and memlock large enough; see tuning/)")]
    Executor { shard: u16, source: glommio::GlommioError<()> },
    /// A shard failed while starting.
    #[error("{0}")]
    Shard(String),
    /// The host cannot run the server as configured.
    #[error("{0}")]
    Host(String),
}

/// The signals that stop the server with a drain. SIGHUP (the terminal that
/// started it went away) drains too, rather than its default of killing the
/// process mid-batch, except where it was ignored when the server started:
/// under `nohup` it stays ignored, as asked.
fn stop_signals() -> Vec<libc::c_int> {
    let mut signals = vec![signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];
    if !ignored_at_start(libc::SIGHUP) {
        signals.push(libc::SIGHUP);
    }
    signals
}

/// Whether `signal` was ignored when this process started (dispositions set
/// to ignore survive exec).
#[allow(unsafe_code)] // reason: sigaction has no safe wrapper here
fn ignored_at_start(signal: libc::c_int) -> bool {
    // SAFETY: a query only (no new action); `old` is a valid out-parameter.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Runs the server until SIGINT, SIGTERM or SIGHUP.
pub fn run(mut config: ServerConfig) -> Result<(), ServerError> {
    let findings = crate::startup_checks::check_host(&config);
    for warning in &findings.warnings {
        crate::log!("hongbao-server: warning: {warning}");
    }
    if let Some(error) = findings.errors.first() {
        return Err(ServerError::Host(error.clone()));
    }
    if let Some(connections) = findings.connections_max {
        config.max_connections = config.max_connections.min(connections);
    }
    check_ports_free(&config)?;
    let stopping = Arc::new(AtomicBool::new(false));
    let failure = Arc::new(std::sync::Mutex::new(None));
    for signal in stop_signals() {
        // The second signal exits at once, with status 1: for a stop stuck
        // in a hung fdatasync, say. Nothing acknowledged is lost by it (an
        // answer goes out only once its change is durable). Registered
        // first, so that the first signal finds the flag still clear.
        signal_hook::flag::register_conditional_shutdown(signal, 1, stopping.clone())
            .map_err(|e| ServerError::Shard(format!("cannot handle signal {signal}: {e}")))?;
        signal_hook::flag::register(signal, stopping.clone())
            .map_err(|e| ServerError::Shard(format!("cannot handle signal {signal}: {e}")))?;
    }
    let config = Arc::new(config);
    let metrics = Arc::new(crate::metrics::Metrics::new(config.shards.len()));
    if let Some(addr) = config.metrics {
        crate::metrics::serve(addr, metrics.clone(), stopping.clone())
            .map_err(|source| ServerError::Listen { addr, source })?;
        crate::log!("hongbao-server: metrics at http://{addr}/metrics");
    }
    let mesh = MeshBuilder::full(config.shards.len(), MESH_CHANNEL_SIZE);
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for plan in config.shards.iter().cloned() {
        let placement = match plan.core {
            Some(core) => Placement::Fixed(core),
            None => Placement::Unbound,
        };
        let (config, mesh, stopping, failure, ready) =
            (config.clone(), mesh.clone(), stopping.clone(), failure.clone(), ready_tx.clone());
        let metrics = metrics.clone();
        let id = plan.id;
        let mut builder = LocalExecutorBuilder::new(placement).name(&format!("shard-{id}"));
        if !config.spin.is_zero() {
            // When the socket loop steps aside for glommio's own rings (the
            // log, the mesh, timers), glommio polls them without sleeping.
            builder = builder.spin_before_park(config.spin);
        }
        let handle = builder
            .spawn(move || run_shard(config, plan, mesh, stopping, failure, ready, metrics))
            .map_err(|source| ServerError::Executor { shard: id, source })?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..config.shards.len() {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(why)) => return Err(ServerError::Shard(why)),
            Err(_) => return Err(ServerError::Shard("a shard stopped while starting".into())),
        }
    }
    let cores: Vec<String> = config
        .shards
        .iter()
        .map(|s| s.core.map_or_else(|| "unpinned".to_string(), |c| c.to_string()))
        .collect();
    let ports = config.shard_ports();
    if config.auth.required() {
        crate::log!("hongbao-server: clients must authenticate: HELLO with the token of --auth-token-file");
    } else if config.listen.ip().is_loopback() {
        crate::log!("hongbao-server: protected mode: no --auth-token-file, so listening on loopback only");
    } else {
        crate::log!("hongbao-server: warning: no --auth-token-file and not on loopback: anyone who reaches the port can move money");
    }
    crate::log!(
        "hongbao-server: ready: {} shards on cores [{}], main port {}, shard ports {}-{}, data dir {}",
        config.shards.len(),
        cores.join(","),
        config.listen,
        ports[0],
        ports[ports.len() - 1],
        config.data_dir.display()
    );
    let finished = Arc::new(AtomicBool::new(false));
    if let Some(late_after) = config.watchdog {
        if let Err(error) = crate::watchdog::spawn(metrics.clone(), late_after, finished.clone()) {
            crate::log!(
                "hongbao-server: warning: no shard watchdog ({error}): a shard asleep and not woken would stay so"
            );
        }
    }
    for handle in handles {
        let _ = handle.join();
    }
    finished.store(true, std::sync::atomic::Ordering::Relaxed);
    let failed = failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    if let Some(why) = failed {
        // A shard could not go on: the server stopped, but not cleanly.
        return Err(ServerError::Shard(why));
    }
    crate::log!("hongbao-server: stopped");
    Ok(())
}

/// Refuses ports where another process listens (see [`crate::port_probe`]).
fn check_ports_free(config: &ServerConfig) -> Result<(), ServerError> {
    let mut ports = vec![config.listen.port()];
    ports.extend(config.shards.iter().map(|s| s.port));
    match crate::port_probe::first_taken(config.listen.ip(), &ports, crate::port_probe::PORT_PATIENCE) {
        Some(addr) => {
            let source = std::io::Error::new(std::io::ErrorKind::AddrInUse, "another process listens there");
            Err(ServerError::Listen { addr, source })
        }
        None => Ok(()),
    }
}
