//! The 24-byte frame header that starts every request and response.
//!
//! ```text
//!  Byte/     0       |       1       |       2       |       3       |
//!     /              |               |               |               |
//!    |0 1 2 3 4 5 6 7|0 1 2 3 4 5 6 7|0 1 2 3 4 5 6 7|0 1 2 3 4 5 6 7|
//!    +---------------+---------------+---------------+---------------+
//!   0| magic 'H'     | magic 'B'     | version       | opcode        |
//!    +---------------+---------------+---------------+---------------+
//!   4| flags         | reserved (0)  | status (u16)                  |
//!    +---------------+---------------+---------------+---------------+
//!   8| body_len (u32)                                                |
//!    +---------------+---------------+---------------+---------------+
//!  12| reserved (u32, 0)                                             |
//!    +---------------+---------------+---------------+---------------+
//!  16| request_id (u64)                                              |
//!    |                                                               |
//!    +---------------+---------------+---------------+---------------+
//! ```

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::FrameError;
use crate::limits::MAX_BODY_LEN;
use crate::opcode::Opcode;
use crate::status::Status;

/// First two bytes of every frame: ASCII "HB".
pub const MAGIC: [u8; 2] = *b"HB";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Size of [`Header`] on the wire.
pub const HEADER_LEN: usize = 24;

/// `flags` bit set on every response and clear on every request.
pub const FLAG_RESPONSE: u8 = 0x01;
/// Every `flags` bit with a meaning; the others must be zero.
pub const FLAGS_KNOWN: u8 = FLAG_RESPONSE;

/// The frame header as it lies on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 2],
    /// [`VERSION`].
    pub version: u8,
    /// An [`Opcode`] byte.
    pub opcode: u8,
    /// [`FLAG_RESPONSE`] on responses.
    pub flags: u8,
    /// Zero.
    pub reserved0: u8,
    /// A [`Status`] code on responses; zero on requests.
    pub status: U16,
    /// Bytes of body after the header; at most [`MAX_BODY_LEN`].
    pub body_len: U32,
    /// Zero.
    pub reserved1: U32,
    /// Chosen by the client, echoed by the response.
    pub request_id: U64,
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_LEN);

impl Header {
    /// A request header.
    pub fn request(opcode: Opcode, request_id: u64, body_len: u32) -> Header {
        Header {
            magic: MAGIC,
            version: VERSION,
            opcode: opcode as u8,
            flags: 0,
            reserved0: 0,
            status: U16::new(0),
            body_len: U32::new(body_len),
            reserved1: U32::new(0),
            request_id: U64::new(request_id),
        }
    }

    /// A response header. `opcode` is the raw byte so that an answer to an
    /// unknown opcode can echo it.
    pub fn response(opcode: u8, request_id: u64, status: Status, body_len: u32) -> Header {
        Header {
            magic: MAGIC,
            version: VERSION,
            opcode,
            flags: FLAG_RESPONSE,
            reserved0: 0,
            status: U16::new(status as u16),
            body_len: U32::new(body_len),
            reserved1: U32::new(0),
            request_id: U64::new(request_id),
        }
    }

    /// Checks everything that can be checked from the header alone, in the order
    /// that makes the answer most useful: magic, version, length, reserved bytes.
    /// The opcode is not checked here: a frame with an unknown opcode has a
    /// trustworthy length and can be skipped, see [`FrameError::UnknownOpcode`].
    pub fn validate(&self) -> Result<(), FrameError> {
        if self.magic != MAGIC {
            return Err(FrameError::BadMagic { found: self.magic });
        }
        if self.version != VERSION {
            return Err(FrameError::UnsupportedVersion { version: self.version });
        }
        let body_len = self.body_len.get();
        if body_len > MAX_BODY_LEN {
            return Err(FrameError::BodyTooLarge { len: body_len, max: MAX_BODY_LEN });
        }
        if self.flags & !FLAGS_KNOWN != 0 {
            return Err(FrameError::UnknownFlags { flags: self.flags });
        }
        if self.reserved0 != 0 {
            return Err(FrameError::ReservedNotZero { offset: 5 });
        }
        if let Some(offset) = first_nonzero(self.reserved1.as_bytes(), 12) {
            return Err(FrameError::ReservedNotZero { offset });
        }
        if self.is_response() {
            if Status::from_u16(self.status.get()).is_none() {
                return Err(FrameError::UnknownStatus { status: self.status.get() });
            }
        } else if let Some(offset) = first_nonzero(self.status.as_bytes(), 6) {
            return Err(FrameError::ReservedNotZero { offset });
        }
        Ok(())
    }

    /// Whether this header is a response's.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// The status of a validated response header.
    pub fn status(&self) -> Status {
        Status::from_u16(self.status.get()).unwrap_or(Status::MalformedFrame)
    }

    /// The opcode, if the table names it.
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.opcode)
    }
}

/// Header offset of the first nonzero byte of a field that starts at `start`.
fn first_nonzero(field: &[u8], start: usize) -> Option<usize> {
    field.iter().position(|b| *b != 0).map(|i| start + i)
}
