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
