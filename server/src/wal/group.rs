//! Group commit: many requests' records share one write and one sync, and an
//! answer that acknowledges a change waits until its record is durable.
//!
//! Connections (and the tasks answering forwarded batches) handle a whole
//! batch, note the last record number the engine has handed out, and wait for
//! [`GroupCommit::wait`] before writing their answers. The shard's writer task
//! takes every record the engine journaled since its last write, appends them
//! with one write and one `fdatasync` (one of each per
//! [`WRITE_RECORDS_MAX`](super::segment::WRITE_RECORDS_MAX) records, should
//! there be more), and wakes every waiter it covered. While it syncs, more
//! batches pile up, so the busier the shard the more records each sync
//! carries.
//!
//! A failed write or sync is never acknowledged: its waiters learn it failed
//! (their connections close without answers), the shard refuses changes from
//! then on, and reads go on.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_channel::oneshot;
use glommio::sync::Semaphore;

use super::record::Record;
use super::segment::SegmentWriter;
use crate::engine::Engine;

/// A shard's commit state, shared by its tasks.
#[derive(Debug)]
pub struct GroupCommit {
    durable_seq: Cell<u64>,
    failed: Cell<bool>,
    wake: Semaphore,
    waiters: RefCell<Vec<(u64, oneshot::Sender<bool>)>>,
    /// Syncs done, for STATS and benchmarks.
    pub syncs: Cell<u64>,
    /// Time of each write and sync.
    pub sync_latency: crate::counters::LocalHistogram,
    /// Rung whenever records become durable or the log fails: the shard's
    /// socket loop holds answers until then.
    doorbell: RefCell<Option<Rc<hongbao_uring::Doorbell>>>,
}

impl GroupCommit {
    /// A commit state whose records up to `durable_seq` are on disk.
    pub fn new(durable_seq: u64) -> GroupCommit {
        GroupCommit {
            durable_seq: Cell::new(durable_seq),
            failed: Cell::new(false),
            wake: Semaphore::new(0),
            waiters: RefCell::new(Vec::new()),
            syncs: Cell::new(0),
            sync_latency: crate::counters::LocalHistogram::default(),
            doorbell: RefCell::new(None),
        }
    }

    /// The last record on disk.
    pub fn durable(&self) -> u64 {
        self.durable_seq.get()
    }

    /// Rings `doorbell` after every write (or failure) from now on.
    pub fn notify(&self, doorbell: Rc<hongbao_uring::Doorbell>) {
        *self.doorbell.borrow_mut() = Some(doorbell);
    }

    /// Whether a write or sync has failed; the shard then refuses changes.
    pub fn failed(&self) -> bool {
        self.failed.get()
    }

    /// Asks the writer to look for records.
    pub fn poke(&self) {
        self.wake.signal(1);
    }

    /// Waits until record `seq` is durable. `false` if it never will be.
    pub async fn wait(&self, seq: u64) -> bool {
        // Durable first: after a failure, what was synced before it may
        // still be shown.
        if seq <= self.durable_seq.get() {
            return true;
        }
        if self.failed.get() {
            return false;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().push((seq, tx));
        self.poke();
        rx.await.unwrap_or(false)
    }

    /// Stops the writer after its current write.
    pub fn close(&self) {
        self.wake.close();
    }

    /// Answers every waiter whose record is durable, or all of them if the
    /// log failed.
    fn settle(&self) {
        if let Some(doorbell) = &*self.doorbell.borrow() {
            doorbell.ring();
        }
        let durable = self.durable_seq.get();
        let failed = self.failed.get();
        let mut waiters = self.waiters.borrow_mut();
        let mut i = 0;
        while i < waiters.len() {
            if failed || waiters[i].0 <= durable {
                let (_, tx) = waiters.swap_remove(i);
                let _ = tx.send(!failed);
            } else {
                i += 1;
            }
        }
    }
}

/// The shard's writer task: takes the engine's journal and makes it durable,
/// batch after batch, until [`GroupCommit::close`].
pub async fn run_writer(
    engine: Rc<RefCell<Engine>>,
    commit: Rc<GroupCommit>,
    mut writer: SegmentWriter,
    shard: u16,
) {
    let mut pending: Vec<Record> = Vec::new();
    loop {
        if commit.wake.acquire(1).await.is_err() {
            break;
        }
        while commit.wake.try_acquire(1).unwrap_or(false) {}
        engine.borrow_mut().take_journal(&mut pending);
        if !pending.is_empty() && !commit.failed.get() {
            let last = pending.last().map_or(0, |r| r.seq.get());
            let started = std::time::Instant::now();
            match writer.append(&pending).await {
                Ok(()) => {
                    commit.sync_latency.record(started.elapsed());
                    commit.durable_seq.set(last);
                    // One fdatasync per piece the append wrote.
                    let pieces = pending.len().div_ceil(super::segment::WRITE_RECORDS_MAX) as u64;
                    commit.syncs.set(commit.syncs.get() + pieces);
                }
                Err(error) => {
                    crate::log!(
                        "hongbao-server: shard {shard}: the log cannot write ({error}); refusing changes from now on, reads go on"
                    );
                    commit.failed.set(true);
                }
            }
        }
        if commit.failed.get() {
            // Never written (this batch, or one taken after the failure): the
            // engine must not show a payment among them as made.
            engine.borrow_mut().note_unwritten(&pending);
        }
        pending.clear();
        commit.settle();
    }
    // Shutting down: make what was journaled durable, then answer the rest.
    engine.borrow_mut().take_journal(&mut pending);
    if !pending.is_empty() && !commit.failed.get() {
        let last = pending.last().map_or(0, |r| r.seq.get());
        if writer.append(&pending).await.is_ok() {
            commit.durable_seq.set(last);
        }
    }
    commit.settle();
}
