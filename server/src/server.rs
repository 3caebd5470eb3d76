//! Starting the shards, reporting when they listen, and stopping them on a
//! signal.

use std::net::TcpListener as StdListener;
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
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(config: ServerConfig) -> Result<(), ServerError> {
    check_ports_free(&config)?;
    let stopping = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stopping.clone())
            .map_err(|e| ServerError::Shard(format!("cannot handle signal {signal}: {e}")))?;
    }
    let config = Arc::new(config);
    let mesh = MeshBuilder::full(config.shards.len(), MESH_CHANNEL_SIZE);
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for plan in config.shards.iter().cloned() {
        let placement = match plan.core {
            Some(core) => Placement::Fixed(core),
            None => Placement::Unbound,
        };
        let (config, mesh, stopping, ready) =
            (config.clone(), mesh.clone(), stopping.clone(), ready_tx.clone());
        let id = plan.id;
        let mut builder = LocalExecutorBuilder::new(placement).name(&format!("shard-{id}"));
        if !config.spin.is_zero() {
            builder = builder.spin_before_park(config.spin);
        }
        let handle = builder
            .spawn(move || run_shard(config, plan, mesh, stopping, ready))
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
    eprintln!(
        "hongbao-server: ready: {} shards on cores [{}], main port {}, shard ports {}-{}, data dir {}",
        config.shards.len(),
        cores.join(","),
        config.listen,
        ports[0],
        ports[ports.len() - 1],
        config.data_dir.display()
    );
    for handle in handles {
        let _ = handle.join();
    }
    eprintln!("hongbao-server: stopped");
    Ok(())
}

/// Binds every port once without SO_REUSEPORT: a port that another process
/// (or another hongbao) holds fails here with a clear message, instead of the
/// kernel quietly sharing it.
fn check_ports_free(config: &ServerConfig) -> Result<(), ServerError> {
    let mut addrs = vec![config.listen];
    addrs.extend(config.shards.iter().map(|s| std::net::SocketAddr::new(config.listen.ip(), s.port)));
    for addr in addrs {
        StdListener::bind(addr).map_err(|source| ServerError::Listen { addr, source })?;
    }
    Ok(())
}
