//! The shard-aware client: one [`Pipeline`] per shard, requests sent straight
//! to the shard that owns them.
//!
//! The server's main port accepts any request and forwards it to the owning
//! shard, which costs a hop between cores. A client that knows the shard map
//! skips the hop: HELLO on the main port lists each shard's *shard-aware
//! port*, and an envelope id names its owning shard in its top 16 bits
//! ([`EnvelopeId::shard`]). So GRAB, OPEN and QUERY go to the owner's port,
//! and CREATE — which makes the envelope on whichever shard receives it — goes
//! round-robin to spread envelopes evenly. HELLO, PING and STATS go
//! round-robin too; to ask one shard in particular use [`ShardedClient::shard_mut`].
//!
//! Connecting needs a runtime, and this crate picks none: the caller passes an
//! async `connect` closure that makes its stream type. The `glommio` feature
//! adds one for `glommio::net::TcpStream` (see [`crate::glommio_net`]).
//!
//! Every shard connection says HELLO too, with the same token (a server that
//! authenticates does so per connection), and the answer must name the shard
//! the port was listed for: a mixed-up port map would otherwise send every
//! request through the forwarding hop without anyone noticing.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use futures_lite::io::{AsyncRead, AsyncWrite};
use hongbao_protocol::{EnvelopeId, Request};

use crate::answer::{AnswerBody, HelloInfo};
use crate::error::ClientError;
use crate::pipeline::{Pipeline, MAX_IN_FLIGHT};
use crate::requests;

/// One pipeline per shard of one server. See the module doc.
#[derive(Debug)]
pub struct ShardedClient<S> {
    info: HelloInfo,
    ports: Vec<u16>,
    shards: Vec<Pipeline<S>>,
    next_round_robin: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ShardedClient<S> {
    /// Says HELLO (with `token`, empty when the server asks for none) on the
    /// main port `addr`, then opens one pipeline of depth `max_in_flight` to
    /// each shard-aware port on the same host, using `connect`.
    pub async fn connect<F, Fut>(
        addr: SocketAddr,
        token: &[u8],
        max_in_flight: usize,
        mut connect: F,
    ) -> Result<ShardedClient<S>, ClientError>
    where
        F: FnMut(SocketAddr) -> Fut,
        Fut: Future<Output = io::Result<S>>,
    {
        let hello = requests::hello(token)?;
        // Refused before any connection is made, not after the main HELLO.
        if !(1..=MAX_IN_FLIGHT).contains(&max_in_flight) {
            return Err(ClientError::DepthOutOfRange { max_in_flight, max: MAX_IN_FLIGHT });
        }
        let main =
            connect(addr).await.map_err(|source| ClientError::Connect { addr: addr.to_string(), source })?;
        let mut main = Pipeline::new(main, 1)?;
        let (info, ports) = handshake(&mut main, &hello).await?;
        drop(main);

        let mut shards = Vec::with_capacity(ports.len());
        for (shard, port) in ports.iter().enumerate() {
            let shard_addr = SocketAddr::new(addr.ip(), *port);
            let stream = connect(shard_addr)
                .await
                .map_err(|source| ClientError::Connect { addr: shard_addr.to_string(), source })?;
            let mut pipeline = Pipeline::new(stream, max_in_flight)?;
            let (shard_info, _) = handshake(&mut pipeline, &hello).await?;
            pipeline.set_max_body_len(shard_info.max_body_len);
            // Every shard must tell the same shard count as the main port:
            // a port of a server being restarted with another count would
            // route envelopes to the wrong owner.
            if shard_info.shard_count != info.shard_count {
                return Err(ClientError::HelloDisagrees {
                    port: *port,
                    main: info.shard_count,
                    found: shard_info.shard_count,
                });
            }
            if usize::from(shard_info.shard_id) != shard {
                return Err(ClientError::ShardMismatch {
                    port: *port,
                    expected: shard as u16,
                    found: shard_info.shard_id,
                });
            }
            shards.push(pipeline);
        }
        // The codec refuses a HELLO with no shards, so round-robin has a shard to pick.
        assert!(!shards.is_empty() && shards.len() == usize::from(info.shard_count));
        Ok(ShardedClient { info, ports, shards, next_round_robin: 0 })
    }

    /// What the main port's HELLO said.
    pub fn info(&self) -> &HelloInfo {
        &self.info
    }

    /// The shard-aware port of each shard, in shard order.
    pub fn shard_ports(&self) -> &[u16] {
        &self.ports
    }

    /// Shards, and so pipelines.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard `request` goes to: the owner of its envelope, or the next in
    /// round-robin for a request that names none. An envelope on a shard the
    /// server does not run goes to shard 0, which answers it (not_found).
    pub fn route(&mut self, request: &Request<'_>) -> Result<usize, ClientError> {
        let envelope = match request {
            Request::Grab(body) | Request::Open(body) => body.envelope.get(),
            Request::Query(body) => body.envelope.get(),
            Request::Create(_) | Request::Hello { .. } | Request::Ping | Request::Stats => {
                let shard = self.next_round_robin;
                self.next_round_robin = (self.next_round_robin + 1) % self.shards.len();
                return Ok(shard);
            }
        };
        let shard = usize::from(EnvelopeId(envelope).shard());
        // An id naming a shard the server does not run still gets its
        // answer (not_found): routing is only an optimisation, and any
        // shard answers any request (PROTOCOL.md 3.2, 5). The first
        // connection takes it.
        Ok(if shard < self.shards.len() { shard } else { 0 })
    }

    /// Pushes `request` onto the pipeline of the shard it routes to; returns
    /// that shard and the request id. Read the answer from that shard's pipeline.
    pub fn push(&mut self, request: &Request<'_>) -> Result<(usize, u64), ClientError> {
        let shard = self.route(request)?;
        let request_id = self.shards[shard].push(request)?;
        Ok((shard, request_id))
    }

    /// Flushes every pipeline that has requests pushed, one write each.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        for pipeline in &mut self.shards {
            pipeline.flush().await?;
        }
        Ok(())
    }

    /// The pipeline of `shard`, if the server runs it.
    pub fn shard_mut(&mut self, shard: usize) -> Option<&mut Pipeline<S>> {
        self.shards.get_mut(shard)
    }

    /// Every pipeline, indexed by shard.
    pub fn pipelines_mut(&mut self) -> &mut [Pipeline<S>] {
        &mut self.shards
    }

    /// The pipelines, indexed by shard, e.g. to drive each from its own task.
    pub fn into_pipelines(self) -> Vec<Pipeline<S>> {
        self.shards
    }
}

/// Sends HELLO on a fresh pipeline and reads the server's answer and ports.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    pipeline: &mut Pipeline<S>,
    hello: &Request<'_>,
) -> Result<(HelloInfo, Vec<u16>), ClientError> {
    pipeline.push(hello)?;
    let in_flight = pipeline.in_flight();
    let Some(answer) = pipeline.next().await? else { return Err(ClientError::Closed { in_flight }) };
    match answer.body {
        AnswerBody::Hello(Some((info, ports))) => Ok((info, ports.iter().collect())),
        AnswerBody::Hello(None) => Err(ClientError::HelloRefused { status: answer.status }),
        other => unreachable!("hello answered as {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;
    use hongbao_protocol::body::EnvelopeKind;
    use hongbao_protocol::{Opcode, Status};

    use super::*;
    use crate::test_support::{self, canned, hello_frame, BlockingStream, FakeConn};

    /// A shard that says it is `shard_id` (of `shard_count`) and records the
    /// opcode of every request after HELLO.
    fn shard(shard_id: u16, shard_count: u16) -> impl FnOnce(FakeConn) -> Vec<Opcode> + Send {
        move |mut conn| {
            let (id, hello) = conn.recv().unwrap();
            assert!(matches!(hello, Request::Hello { .. }));
            conn.send(&hello_frame(id, shard_id, &vec![1; usize::from(shard_count)]));
            let mut seen = Vec::new();
            while let Some((id, request)) = conn.recv() {
                seen.push(request.opcode());
                conn.send(&canned(id, &request));
            }
            seen
        }
    }

    fn connect(addr: SocketAddr) -> Result<ShardedClient<BlockingStream>, ClientError> {
        block_on(ShardedClient::connect(addr, &[], 16, |a| async move { BlockingStream::connect(a) }))
    }

    #[test]
    fn requests_go_to_their_envelopes_shard_and_creates_round_robin() {
        let (addr0, shard0) = test_support::spawn(shard(0, 2));
        let (addr1, shard1) = test_support::spawn(shard(1, 2));
        let ports = [addr0.port(), addr1.port()];
        let (main, main_server) = test_support::spawn(move |mut conn| {
            let (id, _) = conn.recv().unwrap();
            conn.send(&hello_frame(id, 1, &ports));
        });

        let mut client = connect(main).unwrap();
        main_server.join().unwrap();
        assert_eq!(client.shard_count(), 2);
        assert_eq!(client.shard_ports(), &ports);
        assert_eq!(client.info().shard_id, 1);

        let on0 = EnvelopeId::new(0, 7);
        let on1 = EnvelopeId::new(1, 5);
        let create = requests::create(1, 100, 1, EnvelopeKind::Random, 0);
        assert_eq!(client.push(&create).unwrap().0, 0);
        assert_eq!(client.push(&create).unwrap().0, 1);
        assert_eq!(client.push(&create).unwrap().0, 0);
        assert_eq!(client.push(&requests::grab(on1, 1)).unwrap().0, 1);
        assert_eq!(client.push(&requests::open(on0, 1)).unwrap().0, 0);
        assert_eq!(client.push(&requests::query(on1, 0, 1)).unwrap().0, 1);
        // Shard 9 of 2 does not exist: sent anyway, on the first connection.
        assert_eq!(client.push(&requests::grab(EnvelopeId::new(9, 1), 1)).unwrap().0, 0);

        block_on(async {
            client.flush().await.unwrap();
            for (shard, expected) in [(0, 4), (1, 3)] {
                let pipeline = client.shard_mut(shard).unwrap();
                let mut answered = 0;
                while let Some(answer) = pipeline.next().await.unwrap() {
                    assert_eq!(answer.status, Status::Ok);
                    answered += 1;
                }
                assert_eq!(answered, expected);
            }
        });
        drop(client);
        assert_eq!(shard0.join().unwrap(), vec![Opcode::Create, Opcode::Create, Opcode::Open, Opcode::Grab]);
        assert_eq!(shard1.join().unwrap(), vec![Opcode::Create, Opcode::Grab, Opcode::Query]);
    }

    #[test]
    fn a_port_answered_by_the_wrong_shard_is_an_error() {
        // Shard 0's port is answered by shard 1 of the two.
        let (addr0, shard0) = test_support::spawn(shard(1, 2));
        let (main, main_server) = test_support::spawn(move |mut conn| {
            let (id, _) = conn.recv().unwrap();
            conn.send(&hello_frame(id, 0, &[addr0.port(), addr0.port()]));
        });
        let err = connect(main).unwrap_err();
        assert!(matches!(err, ClientError::ShardMismatch { expected: 0, found: 1, .. }), "{err:?}");
        main_server.join().unwrap();
        shard0.join().unwrap();
    }

    #[test]
    fn a_port_of_a_server_with_another_shard_count_is_an_error() {
        // The main port tells one shard; its port answers as shard 0 of 2.
        let (addr0, shard0) = test_support::spawn(shard(0, 2));
        let (main, main_server) = test_support::spawn(move |mut conn| {
            let (id, _) = conn.recv().unwrap();
            conn.send(&hello_frame(id, 0, &[addr0.port()]));
        });
        let err = connect(main).unwrap_err();
        assert!(matches!(err, ClientError::HelloDisagrees { main: 1, found: 2, .. }), "{err:?}");
        main_server.join().unwrap();
        shard0.join().unwrap();
    }

    #[test]
    fn a_refused_hello_is_an_error() {
        let (main, main_server) = test_support::spawn(|mut conn| {
            let (id, _) = conn.recv().unwrap();
            conn.send(&test_support::frame(Opcode::Hello, id, Status::NotAuthenticated, &[]));
        });
        let err = connect(main).unwrap_err();
        assert!(matches!(err, ClientError::HelloRefused { status: Status::NotAuthenticated }), "{err:?}");
        main_server.join().unwrap();
    }
}
