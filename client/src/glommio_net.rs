//! Ready-made connects for glommio (feature `glommio`): the load generator
//! runs on glommio executors, and this saves each caller writing the same
//! connect closure.
//!
//! The async client has no socket timeouts of its own, so every connect here
//! runs under a glommio timer: a port that accepts and never answers (a
//! wedged server, a port forwarded to nothing) fails the connect after
//! [`CONNECT_TIMEOUT`] instead of holding the caller forever. Once
//! connected, how long to wait for an answer is the caller's to decide.
//!
//! Every connection has TCP keepalive on, as the server's side has
//! (PROTOCOL.md 3.5), and a TCP user timeout of the same two minutes: a
//! pipeline sets no time limit on answers, so a server host that vanished
//! without a FIN or RST (lost, or a NAT entry expired) would otherwise hold
//! a caller that sets none either for ever. Keepalive finds it on an idle
//! connection, after [`KEEPALIVE_IDLE_SECS`] plus [`KEEPALIVE_PROBES`] ×
//! [`KEEPALIVE_INTERVAL_SECS`]; the user timeout on one with requests
//! written and not acknowledged (keepalive does not probe those, and the
//! kernel's retransmissions alone would take about 15 minutes).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use glommio::net::TcpStream;
use glommio::GlommioError;

use crate::error::ClientError;
use crate::pipeline::Pipeline;
use crate::sharded::ShardedClient;

/// Longest [`connect_pipeline`] waits for the connection, and
/// [`connect_sharded`] for the main port's and every shard-aware port's
/// connection and HELLO answer, all together. Generous for a server under
/// load (a HELLO is answered before any queued work), short enough that a
/// dead port is reported while someone still waits.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds of silence on a connection before the kernel's first keepalive probe.
pub const KEEPALIVE_IDLE_SECS: u32 = 60;
/// Seconds between keepalive probes.
pub const KEEPALIVE_INTERVAL_SECS: u32 = 10;
/// Unanswered probes after which the kernel resets the connection.
pub const KEEPALIVE_PROBES: u32 = 6;
/// Longest data written may go unacknowledged before the kernel resets the
/// connection, ms: as long as keepalive takes to give up.
pub const USER_TIMEOUT_MS: u32 = (KEEPALIVE_IDLE_SECS + KEEPALIVE_PROBES * KEEPALIVE_INTERVAL_SECS) * 1000;

/// Connects a glommio `TcpStream` with Nagle off (a pipeline writes whole
/// batches itself, and Nagle would only hold back the last partial packet)
/// and TCP keepalive on (see the module doc). The connect fails after
/// [`CONNECT_TIMEOUT`].
pub async fn connect_stream(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).await?;
    stream.set_nodelay(true)?;
    hongbao_uring::socket::set_keepalive(
        stream.as_raw_fd(),
        KEEPALIVE_IDLE_SECS,
        KEEPALIVE_INTERVAL_SECS,
        KEEPALIVE_PROBES,
    )?;
    hongbao_uring::socket::set_user_timeout(stream.as_raw_fd(), USER_TIMEOUT_MS)?;
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
    Pipeline::new(stream, max_in_flight)
}

/// A [`ShardedClient`] over glommio streams; see [`ShardedClient::connect`].
/// Fails with [`ClientError::ConnectTimedOut`] when the connections and
/// their HELLOs take longer than [`CONNECT_TIMEOUT`].
pub async fn connect_sharded(
    addr: SocketAddr,
    token: &[u8],
    max_in_flight: usize,
) -> Result<ShardedClient<TcpStream>, ClientError> {
    connect_sharded_timeout(addr, token, max_in_flight, CONNECT_TIMEOUT).await
}

/// [`connect_sharded`] with `timeout` instead of [`CONNECT_TIMEOUT`].
pub async fn connect_sharded_timeout(
    addr: SocketAddr,
    token: &[u8],
    max_in_flight: usize,
    timeout: Duration,
) -> Result<ShardedClient<TcpStream>, ClientError> {
    let connect = async { Ok(ShardedClient::connect(addr, token, max_in_flight, connect_stream).await) };
    match glommio::timer::timeout(timeout, connect).await {
        Ok(connected) => connected,
        Err(GlommioError::TimedOut(_)) => {
            Err(ClientError::ConnectTimedOut { addr: addr.to_string(), timeout })
        }
        // The future only ever answers Ok: the timer is the one error source.
        Err(other) => Err(ClientError::Io { source: other.into() }),
    }
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

    #[test]
    fn connections_have_nagle_off_keepalive_on_and_a_user_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let executor = LocalExecutorBuilder::default().make().expect("glommio executor");
        let (nodelay, keepalive, user_timeout) = executor.run(async move {
            let stream = connect_stream(addr).await.unwrap();
            let fd = stream.as_raw_fd();
            (
                stream.nodelay().unwrap(),
                hongbao_uring::socket::keepalive(fd).unwrap(),
                hongbao_uring::socket::user_timeout(fd).unwrap(),
            )
        });
        assert!(nodelay);
        assert_eq!(user_timeout, 120_000);
        assert_eq!(keepalive, Some((KEEPALIVE_IDLE_SECS, KEEPALIVE_INTERVAL_SECS, KEEPALIVE_PROBES)));
        drop(listener);
    }

    /// A main port that accepts and reads the HELLO but never answers: the
    /// connect fails after its timeout instead of waiting forever.
    #[test]
    fn a_port_that_never_answers_hello_times_the_connect_out() {
        let (gave_up, wait) = std::sync::mpsc::channel::<()>();
        let (main, main_server) = test_support::spawn(move |mut conn| {
            assert!(conn.recv().is_some(), "the HELLO");
            // Silent (and the connection open) until the client has given up.
            // Hangs up after TEST_TIMEOUT regardless, so a client with no
            // timeout fails (Closed) instead of hanging the test.
            let _ = wait.recv_timeout(test_support::TEST_TIMEOUT);
        });
        let executor = LocalExecutorBuilder::default().make().expect("glommio executor");
        let timeout = Duration::from_millis(200);
        let err =
            executor.run(async move { connect_sharded_timeout(main, &[], 8, timeout).await.unwrap_err() });
        let _ = gave_up.send(());
        assert!(
            matches!(&err, ClientError::ConnectTimedOut { addr, .. } if *addr == main.to_string()),
            "{err:?}"
        );
        main_server.join().unwrap();
    }
}
