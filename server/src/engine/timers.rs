//! The engine's timers: (due time, envelope id), popped in order.
//!
//! Almost every timer is pushed in order: envelopes of a storm are created with
//! the same expiry, so their expiry times rise with creation time, and their
//! eviction times rise with their expiry. Those go on a FIFO, where push and
//! pop are O(1) and memory is sequential; the rare timer that is out of order
//! goes on a heap. Popping takes the smaller of the two fronts, so the order is
//! exactly that of one heap ordered by (due time, id).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Timers in (due time, id) order.
#[derive(Debug, Default)]
pub struct Timers {
    in_order: VecDeque<(u64, u64)>,
    out_of_order: BinaryHeap<Reverse<(u64, u64)>>,
}

impl Timers {
    /// Adds a timer.
    pub fn push(&mut self, due_ms: u64, id: u64) {
        let timer = (due_ms, id);
        match self.in_order.back() {
            Some(last) if timer < *last => self.out_of_order.push(Reverse(timer)),
            _ => self.in_order.push_back(timer),
        }
    }

    /// The first timer, if any.
    pub fn peek(&self) -> Option<(u64, u64)> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(Reverse(b))) => Some(*a.min(b)),
            (Some(a), None) => Some(*a),
            (None, Some(Reverse(b))) => Some(*b),
            (None, None) => None,
        }
    }

    /// Removes and returns the first timer.
    pub fn pop(&mut self) -> Option<(u64, u64)> {
        let first = self.peek()?;
        if self.in_order.front() == Some(&first) {
            self.in_order.pop_front()
        } else {
            self.out_of_order.pop().map(|Reverse(timer)| timer)
        }
    }

    /// Timers held.
    pub fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
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
                assert_eq!(timers.len(), heap.len());
            }
            while let Some(Reverse(expected)) = heap.pop() {
                assert_eq!(timers.pop(), Some(expected));
            }
            assert!(timers.len() == 0 && timers.pop().is_none());
        }
    }
}
