//! Reading responses on the client side: a frame's status and typed body.

use zerocopy::little_endian::U16;
use zerocopy::FromBytes;

use crate::body::{ClaimEntry, FixedBody, HelloResponse, QueryResponse, StatsResponse, StatsTables};
use crate::codec::Frame;
use crate::error::FrameError;
use crate::limits::{MAX_BODY_LEN, MAX_QUERY_PAGE, MAX_SHARDS};
use crate::status::Status;

/// A response frame, checked for direction and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// Raw opcode byte echoed from the request.
    pub opcode: u8,
    /// Echoed request id.
    pub request_id: u64,
    /// Outcome.
    pub status: Status,
    /// Body bytes.
    pub body: &'a [u8],
}

impl<'a> Response<'a> {
    /// Reads a response out of a decoded frame.
    pub fn from_frame(frame: &Frame<'a>) -> Result<Response<'a>, FrameError> {
        if !frame.header.is_response() {
            return Err(FrameError::WrongDirection { response: false });
        }
        Ok(Response {
            opcode: frame.header.opcode,
            request_id: frame.request_id(),
            status: frame.header.status(),
            body: frame.body,
        })
    }

    /// The body as a fixed struct.
    pub fn fixed<T: FixedBody>(&self) -> Result<T, FrameError> {
        T::decode(self.opcode, self.body)
    }

    /// A HELLO response and the shard-aware ports that follow it.
    pub fn hello(&self) -> Result<(HelloResponse, ShardPorts<'a>), FrameError> {
        let (hello, tail) = HelloResponse::decode_prefix(self.opcode, self.body)?;
        let count = hello.shard_count.get();
        if count == 0 || count > MAX_SHARDS {
            return Err(FrameError::FieldOutOfRange {
                field: "shard_count",
                value: u32::from(count),
                min: 1,
                max: u32::from(MAX_SHARDS),
            });
        }
        // PROTOCOL.md 7.1: the answering shard is one of them, and the
        // limits are within the protocol's.
        let shard_id = hello.shard_id.get();
        if shard_id >= count {
            return Err(FrameError::FieldOutOfRange {
                field: "shard_id",
                value: u32::from(shard_id),
                min: 0,
                max: u32::from(count) - 1,
            });
        }
        for (field, value, max) in [
            ("max_body_len", hello.max_body_len.get(), MAX_BODY_LEN),
            ("max_query_page", hello.max_query_page.get(), MAX_QUERY_PAGE),
        ] {
            if value > max {
                return Err(FrameError::FieldTooLarge { field, value, max });
            }
        }
        if tail.len() != usize::from(count) * 2 {
            let expected = HelloResponse::SIZE + usize::from(count) * 2;
            return Err(FrameError::BadBodyLength { opcode: self.opcode, expected, len: self.body.len() });
        }
        Ok((hello, ShardPorts { bytes: tail }))
    }

    /// A QUERY response and its page of claims.
    pub fn query(&self) -> Result<(QueryResponse, Claims<'a>), FrameError> {
        let (query, tail) = QueryResponse::decode_prefix(self.opcode, self.body)?;
        let page_len = query.page_len.get();
        if page_len > MAX_QUERY_PAGE {
            return Err(FrameError::FieldTooLarge {
                field: "page_len",
                value: page_len,
                max: MAX_QUERY_PAGE,
            });
        }
        if tail.len() != page_len as usize * ClaimEntry::SIZE {
            let expected = QueryResponse::SIZE + page_len as usize * ClaimEntry::SIZE;
            return Err(FrameError::BadBodyLength { opcode: self.opcode, expected, len: self.body.len() });
        }
        Ok((query, Claims { bytes: tail, opcode: self.opcode }))
    }

    /// A STATS response and its tables, every entry of which is checked here.
    pub fn stats(&self) -> Result<(StatsResponse, StatsTables<'a>), FrameError> {
        let (stats, _) = StatsResponse::decode_prefix(self.opcode, self.body)?;
        Ok((stats, StatsTables::decode(self.opcode, &stats, self.body)?))
    }
}

/// The shard-aware ports in a HELLO response, in shard order.
#[derive(Clone, Copy, Debug)]
pub struct ShardPorts<'a> {
    bytes: &'a [u8],
}

impl<'a> ShardPorts<'a> {
    /// Iterates the ports.
    pub fn iter(&self) -> impl Iterator<Item = u16> + 'a {
        self.bytes.chunks_exact(2).map(|c| U16::read_from_bytes(c).map(|p| p.get()).unwrap_or(0))
    }
}

/// The claims of one QUERY page.
#[derive(Clone, Copy, Debug)]
pub struct Claims<'a> {
    bytes: &'a [u8],
    opcode: u8,
}

impl<'a> Claims<'a> {
    /// Iterates the claims; a claim with nonzero reserved bytes is an error
    /// whose offset is that byte's offset in the frame.
    pub fn iter(&self) -> impl Iterator<Item = Result<ClaimEntry, FrameError>> + 'a {
        let opcode = self.opcode;
        self.bytes.chunks_exact(ClaimEntry::SIZE).enumerate().map(move |(i, c)| {
            ClaimEntry::decode(opcode, c).map_err(|e| match e {
                FrameError::ReservedNotZero { offset } => FrameError::ReservedNotZero {
                    offset: offset + QueryResponse::SIZE + i * ClaimEntry::SIZE,
                },
                other => other,
            })
        })
    }
}
