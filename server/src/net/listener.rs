//! Accepting connections on one port, within the shard's connection limits:
//! in total, and per source address (so one client cannot take every slot).
//! A connection over a limit is told `busy` and closed; every other goes on.

use std::net::IpAddr;
use std::rc::Rc;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpListener;
use glommio::net::TcpStream;
use hongbao_protocol::codec::write_response;
use hongbao_protocol::Status;

use crate::counters::add;
use crate::net::connection::serve_connection;
use crate::shard::{MeshSenders, Shard};

/// Accepts until the shard stops; each connection gets its own task.
pub async fn accept_loop(shard: Rc<Shard>, mesh: Rc<MeshSenders>, listener: TcpListener) {
    while !shard.is_stopping() {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                // EMFILE and the like: the listener is fine, the host is not.
                eprintln!("hongbao-server: shard {}: accept failed: {error}", shard.id);
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let source = stream.peer_addr().map(|a| a.ip()).ok();
        let over_total = shard.counters.connections.get() as usize >= shard.max_connections;
        let over_source = source.is_some_and(|ip| shard.connections_from(ip) >= shard.max_connections_per_ip);
        if over_total || over_source {
            add(&shard.counters.connections_refused, 1);
            glommio::spawn_local(refuse(stream)).detach();
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shard = shard.clone();
        let mesh = mesh.clone();
        glommio::spawn_local(async move {
            let guard = source.map(|ip| SourceGuard::new(&shard, ip));
            serve_connection(shard.clone(), mesh, stream).await;
            drop(guard);
        })
        .detach();
    }
}

/// Tells a connection over a limit `busy` (request id 0), then closes it.
async fn refuse(mut stream: TcpStream) {
    let mut answer = Vec::with_capacity(24);
    write_response(&mut answer, 0, 0, Status::Busy, &[]);
    let _ = stream.set_write_timeout(Some(std::time::Duration::from_secs(1)));
    let _ = stream.write_all(&answer).await;
    let _ = stream.close().await;
}

/// Counts a connection against its source address while it lives.
struct SourceGuard {
    shard: Rc<Shard>,
    ip: IpAddr,
}

impl SourceGuard {
    fn new(shard: &Rc<Shard>, ip: IpAddr) -> SourceGuard {
        *shard.per_source.borrow_mut().entry(ip).or_insert(0) += 1;
        SourceGuard { shard: shard.clone(), ip }
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut per_source = self.shard.per_source.borrow_mut();
        if let Some(count) = per_source.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_source.remove(&self.ip);
            }
        }
    }
}
