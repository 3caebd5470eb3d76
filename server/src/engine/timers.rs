//! The engine's timers: (due time, envelope id), popped in order.
//!
//! Almost every timer is pushed in order within its kind: envelopes of a storm
//! are created with the same expiry, so their expiry times rise with creation
//! time, and their eviction times (expiry plus retention) rise with their
//! expiry. But the two kinds interleave: at any moment new expiries lie
//! further out than new evictions. So there are two FIFO lanes, each taking
//! the timers that come in its order (push and pop O(1), memory
//! sequential), and a heap for the rare timer that fits neither. Popping
//! takes the smallest of the three fronts, so the order is exactly that of
//! one heap ordered by (due time, id).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::chunked_queue::ChunkedQueue;

/// In-order lanes: one for expiries, one for evictions.
const LANES: usize = 2;

/// Timers in (due time, id) order.
#[derive(Debug, Default)]
pub struct Timers {
    /// Chunked: a lane holds every live envelope's timer, millions in a
    /// storm, and must grow without a copy (see `chunked_queue`).
    in_order: [ChunkedQueue<(u64, u64)>; LANES],
    out_of_order: BinaryHeap<Reverse<(u64, u64)>>,
}

impl Timers {
    /// Adds a timer: to the lane whose last timer is the latest not after
    /// it (so that each kind keeps to its lane), else an empty lane, else
    /// the heap.
    pub fn push(&mut self, due_ms: u64, id: u64) {
        let timer = (due_ms, id);
        let mut best: Option<(usize, Option<(u64, u64)>)> = None;
        for (i, lane) in self.in_order.iter().enumerate() {
            let back = lane.back().copied();
            let fits = back.is_none_or(|last| last <= timer);
            // A lane with a last timer beats an empty one, a later last
            // timer beats an earlier one.
            if fits && best.is_none_or(|(_, b)| back > b) {
                best = Some((i, back));
            }
        }
        match best {
            Some((i, _)) => self.in_order[i].push_back(timer),
            None => self.out_of_order.push(Reverse(timer)),
        }
    }

    /// Where the first timer is: a lane's index, or `LANES` for the heap.
    /// Ties go to the lowest index, as one heap would pop either first.
    #[inline]
    fn first(&self) -> Option<(usize, (u64, u64))> {
        let mut best: Option<(usize, (u64, u64))> = None;
        for (i, lane) in self.in_order.iter().enumerate() {
            if let Some(&timer) = lane.front() {
                if best.is_none_or(|(_, b)| timer < b) {
                    best = Some((i, timer));
                }
            }
        }
        if let Some(Reverse(timer)) = self.out_of_order.peek() {
            if best.is_none_or(|(_, b)| *timer < b) {
                best = Some((LANES, *timer));
            }
        }
        best
    }

    /// The first timer, if any.
    #[cfg(test)]
    pub fn peek(&self) -> Option<(u64, u64)> {
        self.first().map(|(_, t)| t)
    }

    /// Removes and returns the first timer.
    #[cfg(test)]
    pub fn pop(&mut self) -> Option<(u64, u64)> {
        let (at, _) = self.first()?;
        self.take(at)
    }

    /// Removes and returns the first timer if it is due by `now_ms`: one
    /// search of the fronts where a peek and a pop would make two.
    #[inline]
    pub fn pop_due(&mut self, now_ms: u64) -> Option<(u64, u64)> {
        let (at, (due_ms, _)) = self.first()?;
        if due_ms > now_ms {
            return None;
        }
        self.take(at)
    }

    #[inline]
    fn take(&mut self, at: usize) -> Option<(u64, u64)> {
        if at == LANES {
            self.out_of_order.pop().map(|Reverse(timer)| timer)
        } else {
            self.in_order[at].pop_front()
        }
    }

    /// Timers held.
    pub fn len(&self) -> usize {
        self.in_order.iter().map(ChunkedQueue::len).sum::<usize>() + self.out_of_order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_the_order_of_one_heap() {
        let mut rng = super::super::Rng::new(3);
        for round in 0..200 {
            let mut timers = Timers::default();
            let mut heap = BinaryHeap::new();
            let mut due: u64 = 1_000;
            for _ in 0..500 {
                // Mostly rising, sometimes back in time, many ties.
                due = match rng.below(10) {
                    0 => due.saturating_sub(rng.below(50)),
                    1..=3 => due,
                    _ => due + rng.below(5),
                };
                let id = rng.below(40 + round);
                timers.push(due, id);
                heap.push(Reverse((due, id)));
                if rng.below(4) == 0 {
                    assert_eq!(timers.pop(), heap.pop().map(|Reverse(t)| t));
                }
                if rng.below(4) == 0 {
                    // Due by a time near the current one, before or after.
                    let now = (due + 3).saturating_sub(rng.below(6));
                    let expected = match heap.peek() {
                        Some(Reverse(t)) if t.0 <= now => heap.pop().map(|Reverse(t)| t),
                        _ => None,
                    };
                    assert_eq!(timers.pop_due(now), expected);
                }
                assert_eq!(timers.len(), heap.len());
            }
            while let Some(Reverse(expected)) = heap.pop() {
                assert_eq!(timers.pop(), Some(expected));
            }
            assert!(timers.len() == 0 && timers.pop().is_none());
        }
    }

    #[test]
    fn a_storms_expiries_and_evictions_each_keep_to_a_lane() {
        // Every millisecond a few envelopes are created to expire 5 s later;
        // each expiry schedules its eviction 2 s after it, as the engine does.
        let mut timers = Timers::default();
        let (mut id, mut popped) = (0, 0);
        for now in 0..20_000u64 {
            for _ in 0..3 {
                id += 1;
                timers.push(now + 5_000, id);
            }
            while timers.peek().is_some_and(|(due, _)| due <= now) {
                let (due, id) = timers.pop().unwrap();
                popped += 1;
                if id < 1 << 40 {
                    timers.push(due + 2_000, id + (1 << 40)); // its eviction
                }
            }
        }
        assert!(popped > 50_000);
        assert_eq!(timers.out_of_order.len(), 0, "no timer of a storm needs the heap");
    }
}
