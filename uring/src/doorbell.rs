//! A doorbell: how anything on a shard's thread wakes its parked socket loop.
//!
//! The loop parks on [`Doorbell::wait`]; the ring's eventfd task, a finished
//! log sync, a forwarded batch coming back, or a timer ring it. Rings while the
//! loop runs collapse into one, so a busy shard rings at most once per park.

use std::cell::Cell;

use glommio::sync::Semaphore;

/// A one-slot wake-up for one waiter on the same thread.
#[derive(Debug)]
pub struct Doorbell {
    permit: Semaphore,
    rung: Cell<bool>,
}

impl Default for Doorbell {
    fn default() -> Doorbell {
        Doorbell { permit: Semaphore::new(0), rung: Cell::new(false) }
    }
}

impl Doorbell {
    /// Wakes the waiter, or makes its next wait return at once.
    pub fn ring(&self) {
        if !self.rung.replace(true) {
            self.permit.signal(1);
        }
    }

    /// Waits for a ring (at once if one is pending) and clears it.
    pub async fn wait(&self) {
        // The semaphore is never closed, so acquire only ever succeeds.
        let _ = self.permit.acquire(1).await;
        self.rung.set(false);
    }
}
