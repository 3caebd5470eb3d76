//! # hongbao-uring: one socket ring per core
//!
//! glommio gives every executor its own io_uring, but its TCP streams use the
//! ring one connection at a time: a `recv` system call, a `send` system call,
//! and, when a read finds nothing, a poll armed and later re-armed. With one
//! request in flight per connection that is three or four system calls and a
//! cross-core wake-up (an inter-processor interrupt, a VM exit on a virtual
//! machine) for every request, and the kernel time dwarfs the server's own
//! work.
//!
//! This crate gives each executor a second ring that serves *all* its
//! connections at once:
//!
//! * **Multishot receive into provided buffers.** Each connection has one
//!   receive armed for its whole life; the kernel picks a buffer from a shared
//!   pool ([`buffers`]) when data arrives, so idle connections hold no memory
//!   and nothing is re-armed per read.
//! * **Batched sends.** Answers for every connection go out as send entries
//!   submitted together.
//! * **One system call per loop.** [`Ring::poll`] submits everything queued
//!   and reaps every completion with a single `io_uring_enter`.
//! * **No interrupts while busy.** The ring is set up with
//!   `IORING_SETUP_DEFER_TASKRUN` (or `COOP_TASKRUN` on older kernels): the
//!   kernel queues completion work for the owning thread and does it at the
//!   next `io_uring_enter`, instead of interrupting the thread. A busy loop
//!   therefore never takes an inter-processor interrupt.
//! * **Parking through glommio.** When the loop runs out of work it must not
//!   block the executor (the write-ahead log, the shard mesh and timers run on
//!   glommio's own rings). The ring has an eventfd, read by a glommio task
//!   ([`Ring::spawn_wakeup`]); the eventfd is enabled only while the loop
//!   parks, so a busy loop pays nothing for it.
//!
//! The crate is the only place in hongbao with `unsafe` code: handing buffer
//! addresses to the kernel is unsafe by nature. Each `unsafe` block says why it
//! holds; the public API is safe. Buffers a send points at are owned by the
//! ring until the kernel is done with them, the provided-buffer pool lives as
//! long as the ring, and dropping a ring first waits for the kernel to finish
//! every operation.

#![allow(unsafe_code)]

pub mod buffers;
pub mod doorbell;
pub mod ring;
pub mod socket;

pub use doorbell::Doorbell;
pub use ring::{Completion, Ring, RingConfig, TaskRun, Woken, PARK_LOOK_FIRST, PARK_LOOK_MAX};
