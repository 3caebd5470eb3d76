//! The rule for buffers kept for reuse (a connection's spare send buffer,
//! forwarded answers): reuse them, so steady traffic allocates nothing, but
//! not once a burst has grown them large, so that a connection that answered
//! one big pipeline of QUERYs and then went idle does not pin all of that.

/// Largest capacity a buffer keeps when it is handed back for reuse.
pub const RETAIN_BYTES: usize = 256 << 10;

/// `buffer` emptied for reuse, and cut back to [`RETAIN_BYTES`] if it had
/// grown past them (a buffer at a connection's output limit overshoots it by
/// up to one answer, and growth doubles: dropping it instead would cost a
/// fresh allocation at every burst).
pub fn recycle(mut buffer: Vec<u8>) -> Vec<u8> {
    buffer.clear();
    if buffer.capacity() > RETAIN_BYTES {
        buffer.shrink_to(RETAIN_BYTES);
    }
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_buffers_are_kept_and_large_ones_cut_back() {
        let mut small = Vec::with_capacity(4096);
        small.extend_from_slice(b"answers");
        let small = recycle(small);
        assert!(small.is_empty() && small.capacity() >= 4096);
        let large = recycle(vec![0u8; 2 * RETAIN_BYTES + 1]);
        assert!(large.is_empty() && large.capacity() >= RETAIN_BYTES / 2);
        assert!(large.capacity() <= RETAIN_BYTES + RETAIN_BYTES / 8, "{}", large.capacity());
    }
}
