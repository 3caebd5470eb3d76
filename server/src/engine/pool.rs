//! Recycled share storage of small envelopes.
//!
//! Every small envelope gets two heap blocks at CREATE, its entries and its
//! holder table (see `shares`), and gives them back when it is evicted. In a
//! long storm envelopes are created and evicted at the same rate, and glibc's
//! `malloc` and `free` of those blocks (with the consolidation of freed
//! chunks) cost about 45 of the 400 instructions of a request
//! (`bench/callgrind --steady`). The pool keeps evicted blocks by size and
//! hands them to the next CREATE of that size: a pop and a push instead.
//!
//! It holds at most [`POOL_BYTES_MAX`] (counting the allocator's overhead
//! per block and the pool's own handles); blocks past that go back to the
//! allocator, so a storm that shrinks does not keep its peak memory here.

use hongbao_protocol::body::ClaimEntry;

use super::shares::{table_slots, Inline, INLINE_SHARES_MAX};

/// Most bytes of blocks the pool keeps.
pub const POOL_BYTES_MAX: usize = 64 << 20;
/// Table sizes: powers of two up to twice the largest inline count.
const TABLE_CLASSES: usize = (2 * INLINE_SHARES_MAX as usize).trailing_zeros() as usize + 1;

/// Entry vectors by capacity and tables by size, ready for reuse.
#[derive(Debug)]
pub struct SharePool {
    /// `entries[c]`: empty vectors of capacity `c`.
    entries: Vec<Vec<Vec<ClaimEntry>>>,
    /// `tables[k]`: tables of `1 << k` slots, every slot empty.
    tables: Vec<Vec<Box<[u8]>>>,
    bytes: usize,
}

impl Default for SharePool {
    fn default() -> SharePool {
        SharePool {
            entries: (0..=INLINE_SHARES_MAX).map(|_| Vec::new()).collect(),
            tables: (0..TABLE_CLASSES).map(|_| Vec::new()).collect(),
            bytes: 0,
        }
    }
}

impl SharePool {
    /// Storage for `count` shares (at most [`INLINE_SHARES_MAX`]), reused if
    /// the pool has it.
    pub fn inline(&mut self, count: u32) -> Inline {
        let slots = table_slots(count);
        let entries = match self.entries[count as usize].pop() {
            Some(entries) => {
                self.bytes -= entries_bytes(&entries);
                entries
            }
            None => Vec::with_capacity(count as usize),
        };
        let table = match self.tables[slots.trailing_zeros() as usize].pop() {
            Some(table) => {
                self.bytes -= table_bytes(&table);
                table
            }
            None => vec![super::shares::EMPTY; slots].into_boxed_slice(),
        };
        Inline::from_storage(count, entries, table)
    }

    /// Takes back the storage of an evicted envelope's shares.
    pub fn recycle(&mut self, inline: Inline) {
        let (mut entries, mut table) = inline.into_storage();
        let capacity = entries.capacity();
        if capacity <= INLINE_SHARES_MAX as usize && self.bytes + entries_bytes(&entries) <= POOL_BYTES_MAX {
            entries.clear();
            self.bytes += entries_bytes(&entries);
            self.entries[capacity].push(entries);
        }
        let class = table.len().trailing_zeros() as usize;
        if table.len().is_power_of_two()
            && class < TABLE_CLASSES
            && self.bytes + table_bytes(&table) <= POOL_BYTES_MAX
        {
            table.fill(super::shares::EMPTY);
            self.bytes += table_bytes(&table);
            self.tables[class].push(table);
        }
    }

    /// Bytes of blocks held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What a heap block of `bytes` costs glibc: a 16-byte header, at least 32
/// in all. The pool counts that and its own handle to each block, so that
/// [`POOL_BYTES_MAX`] bounds the memory it really keeps.
fn block_bytes(bytes: usize) -> usize {
    (bytes + 16).max(32)
}

fn entries_bytes(entries: &Vec<ClaimEntry>) -> usize {
    block_bytes(entries.capacity() * std::mem::size_of::<ClaimEntry>())
        + std::mem::size_of::<Vec<ClaimEntry>>()
}

fn table_bytes(table: &[u8]) -> usize {
    block_bytes(table.len()) + std::mem::size_of::<Box<[u8]>>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::shares::Shares;

    #[test]
    fn recycled_storage_comes_back_empty_and_for_its_size() {
        let mut pool = SharePool::default();
        let mut shares = Shares::Inline(pool.inline(5));
        shares.reserve(7, 1_000, 0, 0);
        shares.reserve(8, 1_000, 0, 1);
        assert!(shares.holding(7, 0).is_some());
        let Shares::Inline(inline) = shares else { unreachable!() };
        let before = inline.storage_addresses();
        pool.recycle(inline);
        assert!(pool.bytes() > 0);

        // Another size does not take it.
        let other = pool.inline(40);
        assert_ne!(other.storage_addresses().0, before.0);
        // The same size does, with nothing of the old holders left.
        let again = pool.inline(5);
        assert_eq!(again.storage_addresses(), before, "the blocks were reused");
        let shares = Shares::Inline(again);
        assert_eq!(shares.holding(7, 0), None);
        assert_eq!(shares.holding(8, 0), None);
        assert_eq!(shares.claims(0).len(), 0);
        assert_eq!(pool.bytes(), 0);
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_limit() {
        let mut pool = SharePool::default();
        let probe = pool.inline(INLINE_SHARES_MAX);
        let (entries, table) = probe.into_storage();
        let per_envelope = entries_bytes(&entries) + table_bytes(&table);
        assert!(per_envelope > INLINE_SHARES_MAX as usize * 24 + table_slots(INLINE_SHARES_MAX));
        let n = POOL_BYTES_MAX / per_envelope + 10;
        let made: Vec<Inline> = (0..n).map(|_| pool.inline(INLINE_SHARES_MAX)).collect();
        for inline in made {
            pool.recycle(inline);
        }
        assert!(pool.bytes() <= POOL_BYTES_MAX);
        assert!(pool.bytes() + per_envelope > POOL_BYTES_MAX, "it filled up to its limit");
    }
}
