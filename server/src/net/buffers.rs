//! The rule for buffers kept for reuse (a connection's spare send buffer,
//! forwarded answers): reuse them, so steady traffic allocates nothing, but
//! not once a burst has grown them large, so that a connection that answered
//! one big pipeline of QUERYs and then went idle does not pin that memory.

/// Largest capacity a buffer keeps when it is handed back for reuse.
pub const RETAIN_BYTES: usize = 256 << 10;

/// `buffer` emptied for reuse; a fresh (unallocated) one if it had grown
/// past [`RETAIN_BYTES`].
pub fn recycle(mut buffer: Vec<u8>) -> Vec<u8> {
    if buffer.capacity() > RETAIN_BYTES {
        return Vec::new();
    }
    buffer.clear();
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_buffers_are_kept_and_large_ones_let_go() {
        let mut small = Vec::with_capacity(4096);
        small.extend_from_slice(b"answers");
        let small = recycle(small);
        assert!(small.is_empty() && small.capacity() >= 4096);
        let large = recycle(vec![0u8; RETAIN_BYTES + 1]);
        assert_eq!(large.capacity(), 0);
    }
}
