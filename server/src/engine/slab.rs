//! Where a shard keeps its envelopes: a slab addressed by the envelope id.
//!
//! The low 48 bits of an envelope id are this shard's *key*: a slot index in
//! the top 24 bits and the slot's generation in the low 24. Looking an envelope
//! up is an index into a chunk, no hashing, and a stale id (its slot reused
//! since) fails the generation check. Freed slots are reused first in, first
//! out, so a slot comes round again only after every other free slot has. A
//! slot whose generation reaches the largest one is retired for good rather
//! than wrapped: a key is never handed out twice (a stale id can never name a
//! newer envelope, and the log replays, whose keys must rise per slot).
//! Retiring costs one slot per 2^24 reuses. Chunks are allocated
//! as the slab grows and never move, so growth copies nothing.

use super::chunked_queue::ChunkedQueue;
use super::envelope::Envelope;

/// Bits of a key that hold the generation.
const GEN_BITS: u32 = 24;
/// Largest generation; generation 0 is never handed out, so no key is 0.
const GEN_MAX: u32 = (1 << GEN_BITS) - 1;
/// Most slots a slab can have.
pub const SLOTS_MAX: u64 = 1 << 24;
/// Slots per chunk. A new chunk is written whole when the slab grows, inside
/// the CREATE that needs it, and every page of it is a page fault (about 2 us
/// each on the benchmark VM): 512 slots of 152 bytes are 19 pages, a bump of
/// tens of microseconds; 4,096 slots made that CREATE take 350 us, several
/// times a second at a storm's creation rate, and showed in the tail.
const CHUNK_SLOTS: usize = 512;

/// One chunk of slots.
type Chunk = [Slot; CHUNK_SLOTS];

#[derive(Debug)]
struct Slot {
    generation: u32,
    envelope: Option<Envelope>,
}

/// The envelopes of one shard, by key.
#[derive(Debug, Default)]
pub struct Slab {
    /// Fixed-size chunks, so that a slot's index within one needs no
    /// bounds check.
    chunks: Vec<Box<Chunk>>,
    /// Chunked: it holds every free slot, millions after a storm's peak,
    /// and must grow without a copy (see `chunked_queue`).
    free: ChunkedQueue<u32>,
    fresh: u32,
    /// Slots a snapshot being restored says were used: its envelopes' keys
    /// may name any of them before its generations are restored.
    restoring: u32,
    len: usize,
}

/// A chunk of empty slots, made on the heap (it is too large for the stack).
fn new_chunk() -> Box<Chunk> {
    let slots: Box<[Slot]> = (0..CHUNK_SLOTS).map(|_| Slot { generation: 0, envelope: None }).collect();
    slots.try_into().expect("CHUNK_SLOTS slots")
}

impl Slab {
    /// Envelopes held.
    pub fn len(&self) -> usize {
        self.len
    }

    fn split(key: u64) -> (usize, u32) {
        ((key >> GEN_BITS) as usize, (key as u32) & GEN_MAX)
    }

    fn slot(&self, index: usize) -> Option<&Slot> {
        self.chunks.get(index / CHUNK_SLOTS).map(|chunk| &chunk[index % CHUNK_SLOTS])
    }

    fn slot_mut(&mut self, index: usize) -> Option<&mut Slot> {
        self.chunks.get_mut(index / CHUNK_SLOTS).map(|chunk| &mut chunk[index % CHUNK_SLOTS])
    }

    /// The envelope with `key`, if it is still held.
    pub fn get(&self, key: u64) -> Option<&Envelope> {
        let (index, generation) = Self::split(key);
        let slot = self.slot(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.envelope.as_ref()
    }

    /// The envelope with `key`, mutably.
    pub fn get_mut(&mut self, key: u64) -> Option<&mut Envelope> {
        let (index, generation) = Self::split(key);
        let slot = self.slot_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.envelope.as_mut()
    }

    /// The key the next [`Slab::insert`] will use, or `None` when every slot
    /// is taken.
    pub fn next_key(&self) -> Option<u64> {
        let index = match self.free.front() {
            Some(index) => *index as usize,
            None if u64::from(self.fresh) < SLOTS_MAX => self.fresh as usize,
            None => return None,
        };
        let generation = self.slot(index).map_or(0, |slot| slot.generation);
        // Free slots never hold the largest generation: those are retired.
        debug_assert!(generation < GEN_MAX, "slot {index} is retired");
        Some(((index as u64) << GEN_BITS) | u64::from(generation + 1))
    }

    /// Stores `envelope` under [`Slab::next_key`] and returns the key.
    pub fn insert(&mut self, envelope: Envelope) -> u64 {
        let key = self.next_key().expect("insert into a full slab");
        let (index, generation) = Self::split(key);
        if self.free.front() == Some(&(index as u32)) {
            self.free.pop_front();
        } else {
            assert_eq!(index, self.fresh as usize);
            self.fresh += 1;
            if index / CHUNK_SLOTS == self.chunks.len() {
                let chunk = new_chunk();
                self.chunks.push(chunk);
            }
        }
        let slot = self.slot_mut(index).expect("slot exists");
        assert!(slot.envelope.is_none(), "slot {index} reused while held");
        slot.generation = generation;
        slot.envelope = Some(envelope);
        self.len += 1;
        key
    }

    /// Stores `envelope` under a `key` read from the log. The slot must be
    /// empty and the key's generation newer than the slot's. The free list is
    /// left stale; call [`Slab::rebuild_free`] once the log is replayed.
    /// Returns whether it was stored.
    ///
    /// The slot must also be one already used or the next fresh one, as
    /// [`Slab::insert`] would have chosen (or, while a snapshot is restored,
    /// one it says was used): slots are allocated up to the index, so a
    /// single checksummed record naming slot 2^24 - 1 would otherwise cost
    /// 2.4 GiB of chunks.
    pub fn insert_at(&mut self, key: u64, envelope: Envelope) -> bool {
        let (index, generation) = Self::split(key);
        if generation == 0 || index as u64 >= SLOTS_MAX {
            return false;
        }
        if index > self.fresh as usize && index >= self.restoring as usize {
            return false;
        }
        while self.chunks.len() <= index / CHUNK_SLOTS {
            let chunk = new_chunk();
            self.chunks.push(chunk);
        }
        let slot = self.slot_mut(index).expect("chunk allocated above");
        if slot.envelope.is_some() || slot.generation >= generation {
            return false;
        }
        slot.generation = generation;
        slot.envelope = Some(envelope);
        self.fresh = self.fresh.max(index as u32 + 1);
        self.len += 1;
        true
    }

    /// Rebuilds the free list from the empty slots, after a replay.
    pub fn rebuild_free(&mut self) {
        self.free.clear();
        for index in 0..self.fresh as usize {
            if self.slot(index).is_some_and(|slot| slot.envelope.is_none() && slot.generation < GEN_MAX) {
                self.free.push_back(index as u32);
            }
        }
    }

    /// The generation of every slot ever used, in slot order: with the held
    /// envelopes, what a snapshot needs so that no key is ever handed out twice.
    pub fn generations(&self) -> Vec<u32> {
        (0..self.fresh as usize).map(|i| self.slot(i).map_or(0, |slot| slot.generation)).collect()
    }

    /// Lets [`Slab::insert_at`] take keys in the first `slots` slots, which a
    /// snapshot being restored says were used; [`Slab::restore_generations`]
    /// ends it.
    pub fn expect_slots(&mut self, slots: usize) {
        debug_assert!(slots as u64 <= SLOTS_MAX, "a snapshot's slots are bounded when it is read");
        self.restoring = slots.min(SLOTS_MAX as usize) as u32;
    }

    /// Raises empty slots to the generations a snapshot recorded (held slots
    /// already have theirs). Call before [`Slab::rebuild_free`].
    pub fn restore_generations(&mut self, generations: &[u32]) {
        self.restoring = 0;
        for (index, generation) in generations.iter().enumerate() {
            while self.chunks.len() <= index / CHUNK_SLOTS {
                let chunk = new_chunk();
                self.chunks.push(chunk);
            }
            let slot = self.slot_mut(index).expect("chunk allocated above");
            if slot.envelope.is_none() {
                slot.generation = slot.generation.max(*generation & GEN_MAX);
            }
        }
        self.fresh = self.fresh.max(generations.len() as u32);
    }

    /// Removes and returns the envelope with `key`.
    pub fn remove(&mut self, key: u64) -> Option<Envelope> {
        let (index, generation) = Self::split(key);
        let slot = self.slot_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        let envelope = slot.envelope.take()?;
        if slot.generation < GEN_MAX {
            self.free.push_back(index as u32);
        }
        self.len -= 1;
        Some(envelope)
    }

    /// Every envelope held.
    pub fn iter(&self) -> impl Iterator<Item = &Envelope> {
        self.chunks.iter().flat_map(|chunk| chunk.iter()).filter_map(|slot| slot.envelope.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::pool::SharePool;
    use crate::engine::shares::Shares;
    use hongbao_protocol::body::EnvelopeKind;

    fn envelope(pool: &mut SharePool) -> Envelope {
        Envelope::new(1, 1, 10, 1, EnvelopeKind::Fixed, 0, 1_000, Shares::new(1, pool))
    }

    #[test]
    fn a_slot_at_the_largest_generation_is_retired_not_wrapped() {
        let mut pool = SharePool::default();
        let mut slab = Slab::default();
        // Slot 0 at its last generation, as a long-lived shard's log has it.
        let last = u64::from(GEN_MAX);
        assert!(slab.insert_at(last, envelope(&mut pool)));
        slab.rebuild_free();
        assert_eq!(slab.remove(last).map(|e| e.id), Some(1));
        // Not reused: the next key is a fresh slot's first, not slot 0's
        // generation 1 (which would name an envelope slot 0 once held).
        let next = slab.next_key().unwrap();
        assert_eq!(Slab::split(next), (1, 1));
        assert_eq!(slab.insert(envelope(&mut pool)), next);
        // Nor after a restart's rebuild from the slots.
        slab.rebuild_free();
        assert_eq!(Slab::split(slab.next_key().unwrap()), (2, 1));
        // A slot below the last generation is reused as before, one up.
        assert!(slab.remove(next).is_some());
        assert_eq!(Slab::split(slab.next_key().unwrap()), (1, 2));
    }

    /// A key read back names a slot already used or the next fresh one,
    /// never one further: the slab allocates chunks up to the slot a key
    /// names, so one crafted record must not cost gigabytes.
    #[test]
    fn a_replayed_key_past_the_next_fresh_slot_is_refused_before_allocating() {
        let mut pool = SharePool::default();
        let mut slab = Slab::default();
        let key = |index: u64, generation: u64| (index << GEN_BITS) | generation;
        assert!(!slab.insert_at(key(SLOTS_MAX - 1, 1), envelope(&mut pool)));
        assert!(!slab.insert_at(key(1, 1), envelope(&mut pool)));
        assert!(slab.chunks.is_empty(), "{} chunks for refused keys", slab.chunks.len());
        assert!(slab.insert_at(key(0, 1), envelope(&mut pool)));
        assert!(slab.insert_at(key(1, 3), envelope(&mut pool)));
        assert!(!slab.insert_at(key(3, 1), envelope(&mut pool)));
        assert_eq!(slab.chunks.len(), 1);
        // Slot 0 reused at a newer generation, as a shard's log has it.
        assert!(slab.remove(key(0, 1)).is_some());
        assert!(slab.insert_at(key(0, 2), envelope(&mut pool)));
        assert_eq!(slab.len(), 2);
    }

    /// A snapshot holds its envelopes in slot order with gaps where slots
    /// were freed; while it is restored its keys may name any slot it says
    /// was used, and only those.
    #[test]
    fn a_restored_snapshot_may_name_the_slots_it_says_were_used() {
        let mut pool = SharePool::default();
        let mut slab = Slab::default();
        let key = |index: u64, generation: u64| (index << GEN_BITS) | generation;
        let generations = [4, 1, 7, 2, 9];
        slab.expect_slots(generations.len());
        assert!(slab.insert_at(key(2, 7), envelope(&mut pool)));
        assert!(slab.insert_at(key(4, 9), envelope(&mut pool)));
        assert!(!slab.insert_at(key(5 + CHUNK_SLOTS as u64, 1), envelope(&mut pool)));
        slab.restore_generations(&generations);
        slab.rebuild_free();
        // After the restore the rule is the log's again: slot 5 is fresh.
        assert!(!slab.insert_at(key(7, 1), envelope(&mut pool)));
        assert!(slab.insert_at(key(5, 1), envelope(&mut pool)));
        // Freed slots come back one generation up from the snapshot's.
        assert_eq!(Slab::split(slab.next_key().unwrap()), (0, 5));
        assert_eq!(slab.chunks.len(), 1);
    }
}
