//! Envelope ids name their owning shard, so any client routes without a lookup.
//! The low 48 bits are the owning shard's own key (the server's slab slot and
//! generation); clients must not interpret them.
//!
//! ```text
//!  63            48 47                                             0
//! +----------------+------------------------------------------------+
//! |  shard (u16)   |     per-shard key (48 bits, never 0)           |
//! +----------------+------------------------------------------------+
//! ```

use core::fmt;

/// A 64-bit envelope id: the owning shard in the top 16 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvelopeId(pub u64);

impl EnvelopeId {
    /// Bits of the per-shard sequence.
    pub const SEQ_BITS: u32 = 48;
    /// Largest per-shard sequence.
    pub const SEQ_MAX: u64 = (1 << Self::SEQ_BITS) - 1;

    /// The id of sequence `seq` on shard `shard`. `seq` must be in `1..=SEQ_MAX`.
    pub fn new(shard: u16, seq: u64) -> EnvelopeId {
        assert!((1..=Self::SEQ_MAX).contains(&seq), "sequence {seq} out of range");
        EnvelopeId((u64::from(shard) << Self::SEQ_BITS) | seq)
    }

    /// The shard that owns this envelope.
    pub const fn shard(self) -> u16 {
        (self.0 >> Self::SEQ_BITS) as u16
    }

    /// The per-shard sequence number.
    pub const fn seq(self) -> u64 {
        self.0 & Self::SEQ_MAX
    }
}

impl fmt::Display for EnvelopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_and_seq_round_trip() {
        for shard in [0u16, 1, 7, 1023, u16::MAX] {
            for seq in [1u64, 2, 1 << 40, EnvelopeId::SEQ_MAX] {
                let id = EnvelopeId::new(shard, seq);
                assert_eq!(id.shard(), shard);
                assert_eq!(id.seq(), seq);
            }
        }
    }

    #[test]
    #[should_panic]
    fn zero_sequence_is_refused() {
        let _ = EnvelopeId::new(0, 0);
    }
}
