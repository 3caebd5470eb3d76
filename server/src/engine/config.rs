//! The engine's limits and policies, each a named default and a server flag.

/// Default most shares one envelope may have.
pub const MAX_COUNT_DEFAULT: u32 = 10_000;
/// Default largest share, cents.
pub const SHARE_CAP_CENTS_DEFAULT: u64 = 20_000;
/// Default time a reservation holds before it returns to the envelope.
pub const RESERVATION_TTL_MS_DEFAULT: u64 = 60_000;
/// Default expiry when CREATE asks for 0 seconds (one day, as WeChat's).
pub const EXPIRY_SECS_DEFAULT: u32 = 86_400;
/// Default longest expiry CREATE may ask for.
pub const EXPIRY_SECS_MAX_DEFAULT: u32 = 86_400;
/// Default time an envelope stays queryable after its expiry, before eviction.
pub const RETENTION_SECS_DEFAULT: u32 = 3_600;
/// Default most envelopes one shard holds (live and retained).
pub const ENVELOPES_MAX_DEFAULT: u64 = 1_000_000;
/// Default most share slots one shard holds: the counts of its envelopes added
/// up. Reserving every share's slot at CREATE means an envelope accepted is an
/// envelope that can always be paid out in full.
pub const CLAIMS_MAX_DEFAULT: u64 = 16_000_000;

/// Limits and policies of one shard's engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The shard this engine is; the top 16 bits of every id it creates.
    pub shard_id: u16,
    /// Most shares one envelope may have.
    pub max_count: u32,
    /// Largest share, cents.
    pub share_cap_cents: u64,
    /// How long a reservation holds.
    pub reservation_ttl_ms: u64,
    /// Expiry when CREATE asks for 0.
    pub expiry_secs_default: u32,
    /// Longest expiry.
    pub expiry_secs_max: u32,
    /// How long an envelope stays after expiry.
    pub retention_secs: u32,
    /// Most envelopes held.
    pub envelopes_max: u64,
    /// Most share slots held.
    pub claims_max: u64,
    /// Seed of the split's random generator.
    pub seed: u64,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            shard_id: 0,
            max_count: MAX_COUNT_DEFAULT,
            share_cap_cents: SHARE_CAP_CENTS_DEFAULT,
            reservation_ttl_ms: RESERVATION_TTL_MS_DEFAULT,
            expiry_secs_default: EXPIRY_SECS_DEFAULT,
            expiry_secs_max: EXPIRY_SECS_MAX_DEFAULT,
            retention_secs: RETENTION_SECS_DEFAULT,
            envelopes_max: ENVELOPES_MAX_DEFAULT,
            claims_max: CLAIMS_MAX_DEFAULT,
            seed: 0x6867_6b62_616f_0001,
        }
    }
}
