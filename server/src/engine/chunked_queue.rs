//! A FIFO queue in fixed-size chunks, for the engine's queues that grow to
//! millions of entries (the timer lanes, the slab's free slots).
//!
//! A `VecDeque` doubles when it fills: one allocation of twice the size, the
//! wrapped part copied, and every page of the new half faulted in at once.
//! In pipelined storms on the benchmark VM (2026-12-03) the expiry lane's
//! growth past 2^21 entries (32 to 64 MiB) stopped the shard for 55 to
//! 101 ms, every connection waiting; with this queue the longest stall in
//! the same runs was 3 to 29 ms, the machine's own. Chunks of [`CHUNK_ENTRIES`] entries are
//! allocated one at a time as the queue grows (each below the allocator's
//! mmap threshold, so they come from the heap `--prefault-mib` warmed),
//! nothing is ever copied, and a chunk emptied at the front is kept for the
//! next push instead of being freed.

use std::collections::VecDeque;

/// Entries per chunk: 64 KiB chunks for 16-byte timers.
pub const CHUNK_ENTRIES: usize = 4096;

/// A first-in first-out queue of `T`.
#[derive(Debug)]
pub struct ChunkedQueue<T: Copy + Default> {
    /// Full chunks but the first (read from `head`) and the last (written
    /// up to `tail`).
    chunks: VecDeque<Box<[T]>>,
    /// Index of the front entry in the first chunk.
    head: usize,
    /// Entries written in the last chunk.
    tail: usize,
    len: usize,
    /// One emptied chunk, kept so that a queue that stays about the same
    /// length allocates nothing.
    spare: Option<Box<[T]>>,
}

impl<T: Copy + Default> Default for ChunkedQueue<T> {
    fn default() -> Self {
        ChunkedQueue { chunks: VecDeque::new(), head: 0, tail: CHUNK_ENTRIES, len: 0, spare: None }
    }
}

impl<T: Copy + Default> ChunkedQueue<T> {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the queue holds nothing.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `value` at the back.
    pub fn push_back(&mut self, value: T) {
        if self.tail == CHUNK_ENTRIES {
            let chunk =
                self.spare.take().unwrap_or_else(|| vec![T::default(); CHUNK_ENTRIES].into_boxed_slice());
            self.chunks.push_back(chunk);
            self.tail = 0;
        }
        let last = self.chunks.back_mut().expect("a chunk with room");
        last[self.tail] = value;
        self.tail += 1;
        self.len += 1;
    }

    /// The front entry.
    pub fn front(&self) -> Option<&T> {
        if self.len == 0 {
            return None;
        }
        self.chunks.front().map(|chunk| &chunk[self.head])
    }

    /// The back entry.
    pub fn back(&self) -> Option<&T> {
        if self.len == 0 {
            return None;
        }
        self.chunks.back().map(|chunk| &chunk[self.tail - 1])
    }

    /// Removes and returns the front entry.
    pub fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let value = self.chunks.front().expect("a chunk holds the front")[self.head];
        self.head += 1;
        self.len -= 1;
        if self.len == 0 {
            // Empty: keep the one chunk and write it again from its start.
            debug_assert_eq!(self.chunks.len(), 1);
            self.head = 0;
            self.tail = 0;
        } else if self.head == CHUNK_ENTRIES {
            self.spare = self.chunks.pop_front();
            self.head = 0;
        }
        Some(value)
    }

    /// Removes every entry, keeping one chunk for reuse.
    pub fn clear(&mut self) {
        if let Some(chunk) = self.chunks.pop_front() {
            self.spare = Some(chunk);
        }
        self.chunks.clear();
        (self.head, self.tail, self.len) = (0, CHUNK_ENTRIES, 0);
    }

    /// Every entry, front to back.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        let last = self.chunks.len().saturating_sub(1);
        self.chunks.iter().enumerate().flat_map(move |(i, chunk)| {
            let from = if i == 0 { self.head } else { 0 };
            let to = if i == last { self.tail } else { CHUNK_ENTRIES };
            chunk[from..to.max(from)].iter()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random pushes and pops, long enough to cross many chunk boundaries
    /// in both directions, against `VecDeque`.
    #[test]
    fn behaves_as_a_vecdeque() {
        let mut rng = super::super::Rng::new(11);
        let mut queue = ChunkedQueue::<(u64, u64)>::default();
        let mut model = VecDeque::new();
        for step in 0..400_000u64 {
            // Phases that grow, shrink to empty, and hover.
            let push_bias = match (step / 50_000) % 4 {
                0 => 8,
                1 => 2,
                2 => 5,
                _ => 0,
            };
            if rng.below(10) < push_bias {
                queue.push_back((step, rng.below(1000)));
                model.push_back(*queue.back().unwrap());
            } else {
                assert_eq!(queue.pop_front(), model.pop_front());
            }
            assert_eq!(queue.len(), model.len());
            assert_eq!(queue.front(), model.front());
            assert_eq!(queue.back(), model.back());
            if step % 9_973 == 0 {
                assert!(queue.iter().eq(model.iter()), "at step {step}");
            }
        }
        queue.clear();
        assert!(queue.is_empty() && queue.pop_front().is_none() && queue.iter().next().is_none());
        queue.push_back((1, 2));
        assert_eq!((queue.front(), queue.back(), queue.len()), (Some(&(1, 2)), Some(&(1, 2)), 1));
    }

    /// Cleared with several chunks held (as `Slab::rebuild_free` does),
    /// then refilled: only the new entries, in order.
    #[test]
    fn clear_of_a_long_queue_then_refill() {
        let mut queue = ChunkedQueue::<u32>::default();
        for i in 0..(3 * CHUNK_ENTRIES + 17) as u32 {
            queue.push_back(i);
        }
        queue.pop_front();
        queue.clear();
        assert!(queue.is_empty() && queue.front().is_none() && queue.back().is_none());
        for i in 0..(CHUNK_ENTRIES + 5) as u32 {
            queue.push_back(1_000_000 + i);
        }
        assert_eq!(queue.len(), CHUNK_ENTRIES + 5);
        assert!(queue.iter().copied().eq((0..(CHUNK_ENTRIES + 5) as u32).map(|i| 1_000_000 + i)));
        for i in 0..(CHUNK_ENTRIES + 5) as u32 {
            assert_eq!(queue.pop_front(), Some(1_000_000 + i));
        }
        assert!(queue.pop_front().is_none());
    }

    #[test]
    fn exact_chunk_boundaries() {
        let mut queue = ChunkedQueue::<u32>::default();
        for round in 0..3 {
            for i in 0..(2 * CHUNK_ENTRIES) as u32 {
                queue.push_back(i);
            }
            assert_eq!(queue.len(), 2 * CHUNK_ENTRIES, "round {round}");
            assert_eq!(queue.iter().count(), 2 * CHUNK_ENTRIES);
            for i in 0..(2 * CHUNK_ENTRIES) as u32 {
                assert_eq!(queue.pop_front(), Some(i));
            }
            assert!(queue.is_empty() && queue.front().is_none() && queue.back().is_none());
        }
    }

    /// A queue that stays about the same length reuses its chunks: after the
    /// first fill it holds at most one chunk beyond what its entries need.
    #[test]
    fn a_steady_queue_keeps_a_bounded_number_of_chunks() {
        let mut queue = ChunkedQueue::<u32>::default();
        for i in 0..10 * CHUNK_ENTRIES as u32 {
            queue.push_back(i);
        }
        for i in 0..100 * CHUNK_ENTRIES as u32 {
            queue.push_back(i);
            queue.pop_front();
            assert!(queue.chunks.len() <= 11, "{} chunks for {} entries", queue.chunks.len(), queue.len());
        }
    }
}
