//! The provided-buffer pool: a ring of buffer addresses shared with the kernel
//! (`IORING_REGISTER_PBUF_RING`), from which a multishot receive takes a
//! buffer each time data arrives.
//!
//! One pool serves every connection of the ring, so memory grows with the data
//! in flight, not with the connections open: a thousand idle connections hold
//! no receive buffer at all. A buffer goes back to the pool as soon as its
//! completion has been handled (the caller copies what it must keep), so in
//! steady state the pool never runs dry; if it does, receives end with
//! `ENOBUFS` and the caller re-arms them.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The pool: `count` buffers of `size` bytes, and the ring of entries that
/// tells the kernel which are free.
pub struct BufferPool {
    /// Page-aligned ring entries, mapped anonymous memory (the kernel requires
    /// page alignment).
    entries: *mut BufRingEntry,
    entries_len: usize,
    /// The buffers themselves, back to back: `count * size` bytes from a
    /// leaked `Box<[u8]>`, freed in `Drop`. Held as a pointer, not a slice:
    /// the kernel writes into the buffers it holds while we read others, so
    /// no reference may ever cover more than the one buffer being read.
    memory: NonNull<u8>,
    size: usize,
    count: u16,
    /// Our copy of the ring's tail; published to the kernel by [`commit`].
    ///
    /// [`commit`]: BufferPool::commit
    tail: u16,
    group: u16,
}

impl BufferPool {
    /// Maps and registers a pool of `count` (a power of two, at most 32,768)
    /// buffers of `size` bytes as buffer group `group` of `ring`.
    pub fn new(ring: &IoUring, group: u16, count: u16, size: usize) -> io::Result<BufferPool> {
        if !count.is_power_of_two() || count > 32_768 || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("buffer pool: {count} buffers of {size} bytes (count must be a power of two)"),
            ));
        }
        let entries_len = std::mem::size_of::<BufRingEntry>() * usize::from(count);
        // SAFETY: an anonymous private mapping; no existing memory is touched.
        let mapped = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                entries_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let entries = mapped.cast::<BufRingEntry>();
        let memory = Box::into_raw(vec![0u8; usize::from(count) * size].into_boxed_slice());
        let mut pool = BufferPool {
            entries,
            entries_len,
            // SAFETY: `Box::into_raw` never returns null.
            memory: unsafe { NonNull::new_unchecked(memory.cast::<u8>()) },
            size,
            count,
            tail: 0,
            group,
        };
        // SAFETY: `entries` is page-aligned, `count` entries long, and lives
        // until `Drop`, which only runs once the ring has released it (the
        // ring drops its pool after unregistering it, see `Ring::drop`).
        unsafe { ring.submitter().register_buf_ring_with_flags(entries as u64, count, group, 0)? };
        for id in 0..count {
            pool.give_back(id);
        }
        pool.commit();
        Ok(pool)
    }

    /// The buffer group id receives name.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Bytes per buffer.
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    /// The first `len` bytes of buffer `id`, which the kernel has filled.
    pub fn data(&self, id: u16, len: usize) -> &[u8] {
        assert!(id < self.count, "buffer {id} is not in a pool of {}", self.count);
        let start = usize::from(id) * self.size;
        // SAFETY: inside the allocation (`id < count`, `len` clamped to the
        // buffer); the kernel handed this buffer over with its completion and
        // gets it back only through `give_back`, after the caller is done.
        unsafe { std::slice::from_raw_parts(self.memory.as_ptr().add(start), len.min(self.size)) }
    }

    /// Queues buffer `id` to go back to the kernel at the next [`commit`].
    ///
    /// [`commit`]: BufferPool::commit
    pub fn give_back(&mut self, id: u16) {
        assert!(id < self.count, "buffer {id} is not in a pool of {}", self.count);
        let slot = usize::from(self.tail & (self.count - 1));
        // Pointer arithmetic, no reference: the kernel may be writing next door.
        let address = self.memory.as_ptr().wrapping_add(usize::from(id) * self.size) as u64;
        // SAFETY: `slot < count`, inside the mapping; the kernel only reads
        // entries up to the published tail, and this one is past it.
        unsafe {
            let entry = &mut *self.entries.add(slot);
            entry.set_addr(address);
            entry.set_len(self.size as u32);
            entry.set_bid(id);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes every buffer given back since the last commit.
    pub fn commit(&mut self) {
        // SAFETY: the tail field sits inside the first entry of the mapping;
        // the kernel reads it concurrently, hence the atomic release store,
        // which also orders the entry writes before it.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for BufferPool {
    // Not the buffers: 16 MiB of them, and the kernel may be writing them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("group", &self.group)
            .field("count", &self.count)
            .field("size", &self.size)
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; and the buffers'
        // allocation, rebuilt from the pointer and length `new` leaked.
        unsafe {
            libc::munmap(self.entries.cast(), self.entries_len);
            let len = usize::from(self.count) * self.size;
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.memory.as_ptr(), len)));
        }
    }
}
