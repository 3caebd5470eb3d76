//! The rule for buffers kept for reuse (a connection's spare send buffer,
//! forwarded answers): reuse them, so steady traffic allocates nothing, but
//! not once a burst has grown them large, so that a connection that answered
//! one big pipeline of QUERYs and then went idle does not pin all of that.
//! A connection that stays idle through a whole sweep gives back every empty
//! buffer above [`IDLE_KEEP_BYTES`]: ten thousand connections that each once
//! sent a burst must not keep a burst's worth each.

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

/// Largest capacity an empty buffer of an idle connection keeps.
pub const IDLE_KEEP_BYTES: usize = 4096;

/// Gives back an empty `buffer`'s memory if it is above [`IDLE_KEEP_BYTES`].
/// A buffer that still holds bytes is left as it is.
pub fn shrink_idle(buffer: &mut Vec<u8>) {
    if buffer.is_empty() && buffer.capacity() > IDLE_KEEP_BYTES {
        *buffer = Vec::new();
    }
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

    #[test]
    fn idle_buffers_give_back_all_but_a_little_and_never_drop_bytes() {
        let mut large = Vec::with_capacity(RETAIN_BYTES);
        shrink_idle(&mut large);
        assert_eq!(large.capacity(), 0);
        let mut small = Vec::<u8>::with_capacity(IDLE_KEEP_BYTES);
        shrink_idle(&mut small);
        assert_eq!(small.capacity(), IDLE_KEEP_BYTES, "small buffers are kept: no churn for slow clients");
        let mut holding = Vec::with_capacity(RETAIN_BYTES);
        holding.push(7u8);
        shrink_idle(&mut holding);
        assert_eq!((holding.as_slice(), holding.capacity()), (&[7u8][..], RETAIN_BYTES));
    }
}
