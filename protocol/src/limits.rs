//! Every bound of the wire format in one place, so that a decoder can check a
//! length the peer sent before it looks at (or allocates for) anything.

/// Largest body any frame may carry. The largest legitimate body is a full QUERY
/// page, `QueryResponse` plus [`MAX_QUERY_PAGE`] claims, well under this.
pub const MAX_BODY_LEN: u32 = 64 * 1024;

/// Most claims returned by one QUERY page.
pub const MAX_QUERY_PAGE: u32 = 1024;

/// Most shards a server may run; HELLO lists one port for each.
pub const MAX_SHARDS: u16 = 1024;

/// Longest authentication token HELLO may carry.
pub const MAX_TOKEN_LEN: u32 = 512;

/// Most request counts, (opcode, status) pairs, in one STATS answer. The
/// tables name 8 opcode slots (7 opcodes and "other") and 21 statuses today,
/// 168 pairs; the rest is room for the tables to grow.
pub const MAX_STATS_REQUEST_COUNTS: u16 = 512;

/// Most bucket bounds of the histograms in one STATS answer (the server uses 14).
pub const MAX_STATS_BUCKET_BOUNDS: u16 = 32;

/// Most histograms in one STATS answer: one per opcode slot (8 today) and
/// the log sync's.
pub const MAX_STATS_HISTOGRAMS: u16 = 64;

/// Largest frame (header and body) that can be on the wire.
pub const MAX_FRAME_LEN: usize = crate::header::HEADER_LEN + MAX_BODY_LEN as usize;

const _: () = assert!(
    <crate::body::QueryResponse as crate::body::FixedBody>::SIZE
        + MAX_QUERY_PAGE as usize * <crate::body::ClaimEntry as crate::body::FixedBody>::SIZE
        <= MAX_BODY_LEN as usize
);
const _: () = assert!(
    <crate::body::HelloResponse as crate::body::FixedBody>::SIZE + MAX_SHARDS as usize * 2
        <= MAX_BODY_LEN as usize
);
const _: () = {
    use crate::body::{FixedBody, HistogramHeader, RequestCount, StatsResponse};
    let bounds = MAX_STATS_BUCKET_BOUNDS as usize;
    let largest = StatsResponse::SIZE
        + MAX_STATS_REQUEST_COUNTS as usize * RequestCount::SIZE
        + bounds * 8
        + MAX_STATS_HISTOGRAMS as usize * (HistogramHeader::SIZE + (bounds + 1) * 8);
    // Under half the body limit, so the tables can grow without a new limit.
    assert!(largest <= MAX_BODY_LEN as usize / 2);
};
