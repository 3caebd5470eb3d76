//! Ready-made connects for glommio (feature `glommio`): the load generator
//! runs on glommio executors, and this saves each caller writing the same
//! connect closure.

use std::io;
use std::net::SocketAddr;

use glommio::net::TcpStream;

use crate::error::ClientError;
use crate::pipeline::Pipeline;
use crate::sharded::ShardedClient;

/// Connects a glommio `TcpStream` with Nagle off: a pipeline writes whole
/// batches itself, and Nagle would only hold back the last partial packet.
pub async fn connect_stream(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One pipeline to `addr` (any port: main or shard-aware).
pub async fn connect_pipeline(
    addr: SocketAddr,
    max_in_flight: usize,
) -> Result<Pipeline<TcpStream>, ClientError> {
    let stream = connect_stream(addr)
        .await
        .map_err(|source| ClientError::Connect { addr: addr.to_string(), source })?;
    Ok(Pipeline::new(stream, max_in_flight))
}

/// A [`ShardedClient`] over glommio streams; see [`ShardedClient::connect`].
pub async fn connect_sharded(
    addr: SocketAddr,
    token: &[u8],
    max_in_flight: usize,
) -> Result<ShardedClient<TcpStream>, ClientError> {
    ShardedClient::connect(addr, token, max_in_flight, connect_stream).await
}

#[cfg(test)]
mod tests {
    use glommio::LocalExecutorBuilder;
    use hongbao_protocol::Status;

    use super::*;
    use crate::requests;
    use crate::test_support::{self, hello_frame, serve_canned};

    #[test]
    fn a_sharded_client_runs_on_glommio() {
        let (shard0, server0) = test_support::spawn(|mut conn| {
            let (id, _) = conn.recv().unwrap();
            conn.send(&hello_frame(id, 0, &[1]));
            serve_canned(conn);
        });
        let (main, main_server) = test_support::spawn(move |mut conn| {
            let (id, _) = conn.recv().unwrap();
            conn.send(&hello_frame(id, 0, &[shard0.port()]));
        });
        let executor = LocalExecutorBuilder::default().make().expect("glommio executor");
        executor.run(async move {
            let mut client = connect_sharded(main, &[], 8).await.unwrap();
            client.push(&requests::grab(hongbao_protocol::EnvelopeId::new(0, 1), 1)).unwrap();
            client.flush().await.unwrap();
            let answer = client.shard_mut(0).unwrap().next().await.unwrap().unwrap();
            assert_eq!(answer.status, Status::Ok);
        });
        main_server.join().unwrap();
        server0.join().unwrap();
    }
}
