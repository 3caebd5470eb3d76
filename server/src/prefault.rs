//! Touching a shard's heap before its first request (`--prefault-mib`).
//!
//! A storm's first seconds grow a shard's memory fast: about 420 bytes an
//! envelope at 600,000 envelopes a second in the benchmark, 60,000 fresh
//! pages a second. Each costs a page fault on first touch, and on a VM whose
//! guest hands free pages back to the host (virtio-balloon free page
//! reporting) the host must back it again: 2 to 7 µs a page on the benchmark
//! VM, a tenth of the shard's core while memory grows. Once envelopes
//! expire and are evicted, memory is recycled (the share pool, the slab's
//! free slots, the allocator's free lists) and faults stop; a fresh server
//! meets the storm's peak at its worst.
//!
//! Prefaulting moves that cost to start-up. On the shard's own thread (so
//! the memory lands in that thread's allocator arena) it allocates the
//! amount in blocks below the allocator's mmap threshold, writes every page,
//! keeps the last block and frees the others. They are then free chunks in
//! the middle of the arena, below the kept block: glibc gives the kernel back
//! only the top of a heap, so it keeps them and carves later allocations on
//! this thread (envelopes, share storage, slab chunks) out of pages already
//! in memory. The resident memory stays at least the prefaulted amount for
//! the life of the process, as a reservation should. Another allocator may
//! return the memory instead; the test below says whether this one keeps it.

/// Size of each block: well under glibc's smallest mmap threshold (128 KiB),
/// so blocks come from the arena and are not mapped and unmapped one by one.
const BLOCK_BYTES: usize = 64 << 10;

/// Largest `--prefault-mib` accepted (1 TiB), before the check against the
/// memory the machine has.
pub const PREFAULT_MIB_MAX: u64 = 1 << 20;

/// The block kept so that the freed blocks below it stay in the arena.
/// Held for the life of the shard.
#[derive(Debug)]
pub struct Prefaulted {
    _pin: Option<Vec<u8>>,
    /// Bytes written.
    pub bytes: usize,
    /// Minor page faults this thread took while writing them.
    pub faults: u64,
}

/// Minor page faults taken by the calling thread so far.
#[allow(unsafe_code)]
pub fn thread_minor_faults() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return 0;
    }
    usage.ru_minflt as u64
}

#[allow(unsafe_code)]
fn page_bytes() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        page as usize
    } else {
        4096
    }
}

/// Allocates and writes `bytes` (rounded up to whole blocks) on the calling
/// thread, then frees all but the last block; see the module doc.
#[allow(unsafe_code)]
pub fn prefault(bytes: usize) -> Prefaulted {
    if bytes == 0 {
        return Prefaulted { _pin: None, bytes: 0, faults: 0 };
    }
    let page = page_bytes();
    let faults_before = thread_minor_faults();
    let count = bytes.div_ceil(BLOCK_BYTES);
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(count);
    for _ in 0..count {
        let mut block: Vec<u8> = Vec::with_capacity(BLOCK_BYTES);
        let base = block.as_mut_ptr();
        for offset in (0..BLOCK_BYTES).step_by(page) {
            // SAFETY: offset < BLOCK_BYTES = the block's capacity. A volatile
            // write, so that the touch is not optimised away: the page must
            // really be faulted in now.
            unsafe { base.add(offset).write_volatile(1) };
        }
        blocks.push(block);
    }
    let faults = thread_minor_faults().saturating_sub(faults_before);
    let pin = blocks.pop();
    drop(blocks);
    Prefaulted { _pin: pin, bytes: count * BLOCK_BYTES, faults }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates `bytes` in blocks of envelope-storage sizes, writes each
    /// page once and returns the faults taken.
    fn touch_small_blocks(bytes: usize) -> (Vec<Vec<u8>>, u64) {
        let before = thread_minor_faults();
        let mut held = Vec::new();
        let mut total = 0;
        let sizes = [48usize, 200, 24 * 8, 24 * 64, 16, 77_824];
        let mut i = 0;
        while total < bytes {
            let size = sizes[i % sizes.len()];
            let mut block: Vec<u8> = vec![0; size];
            for offset in (0..size).step_by(512) {
                block[offset] = 1;
            }
            total += size;
            held.push(block);
            i += 1;
        }
        (held, thread_minor_faults().saturating_sub(before))
    }

    /// Gives every arena's free memory back to the kernel, so that a thread
    /// handed an arena another thread left (glibc reuses them) starts cold.
    #[allow(unsafe_code)]
    fn trim_all_arenas() {
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe { libc::malloc_trim(0) };
    }

    /// The point of the module, checked by the kernel's own count: after
    /// prefaulting, a thread's allocations of envelope sizes take almost no
    /// page faults, where the same allocations on a fresh thread take one a
    /// page. Each side runs on a thread of its own, which starts by trimming
    /// the arenas, so neither finds memory another left resident.
    #[test]
    fn allocations_after_prefault_take_almost_no_page_faults() {
        const BYTES: usize = 64 << 20;
        let pages = (BYTES / page_bytes()) as u64;
        let cold = std::thread::spawn(|| {
            trim_all_arenas();
            touch_small_blocks(BYTES).1
        })
        .join()
        .unwrap();
        let (warm, prefaulted) = std::thread::spawn(|| {
            trim_all_arenas();
            let reserved = prefault(BYTES + (8 << 20));
            let faults = touch_small_blocks(BYTES).1;
            (faults, reserved.faults)
        })
        .join()
        .unwrap();
        // A quarter, not all: tests running beside this one allocate too.
        assert!(cold > pages / 4, "cold allocations fault page by page: {cold} faults for {pages} pages");
        assert!(prefaulted > pages / 2, "prefault writes every page: {prefaulted} faults");
        assert!(warm < pages / 20, "after prefault: {warm} faults for {pages} pages (cold: {cold})");
    }

    #[test]
    fn prefault_of_zero_does_nothing() {
        let done = prefault(0);
        assert_eq!((done.bytes, done.faults), (0, 0));
    }

    #[test]
    fn prefault_rounds_up_to_whole_blocks() {
        assert_eq!(prefault(1).bytes, BLOCK_BYTES);
        assert_eq!(prefault(BLOCK_BYTES + 1).bytes, 2 * BLOCK_BYTES);
    }
}
