//! Accepting connections on one port, up to the shard's connection limit.

use std::rc::Rc;

use glommio::net::TcpListener;

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
        if shard.counters.connections.get() as usize >= shard.max_connections {
            add(&shard.counters.connections_refused, 1);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        glommio::spawn_local(serve_connection(shard.clone(), mesh.clone(), stream)).detach();
    }
}
