//! # hongbao-loadgen
//!
//! The load generator that proves hongbao's numbers and checks its money while
//! doing so.
//!
//! Each worker is a glommio executor pinned to one core (`--cores`). It asks
//! the server for its shard map (HELLO, through the client library's
//! shard-aware client), opens `--connections` connections to every shard's
//! own port, and drives them all from one loop over one io_uring
//! ([`driver`], with `hongbao-uring`): closed loop at a pipelining depth for
//! peak throughput, or open loop at a fixed rate where latency counts from
//! when each request was due, so coordinated omission cannot hide a stall. What to send comes from a
//! [`workload::ShardWork`] per shard (the storm, a hot envelope, or a single
//! operation); every OPEN the server acknowledges goes into a [`money::Ledger`]
//! that flags any broken money rule, and a sample of envelopes is compared
//! with QUERY at the end. Figures are [`results`], reported by [`report`] and
//! [`plot`].

pub mod args;
pub mod driver;
pub mod money;
pub mod plot;
pub mod report;
pub mod results;
pub mod slowness;
pub mod stalls;
pub mod violations;
pub mod worker;
pub mod workload;
