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
