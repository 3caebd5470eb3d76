//! Why a frame or body could not be decoded, and which status the peer gets.

use crate::status::Status;

/// A frame that cannot be decoded. Each variant names the field at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first two bytes are not "HB".
    #[error("bad magic {found:02x?}, expected \"HB\"")]
    BadMagic { found: [u8; 2] },
    /// The header names a protocol version this crate does not speak.
    #[error("unsupported protocol version {version}")]
    UnsupportedVersion { version: u8 },
    /// `body_len` is above the limit; nothing of the body is read.
    #[error("body length {len} above the limit {max}")]
    BodyTooLarge { len: u32, max: u32 },
    /// A flags bit without a meaning is set.
    #[error("unknown flags {flags:#04x}")]
    UnknownFlags { flags: u8 },
    /// A reserved byte is not zero; `offset` is the byte's offset in the frame
    /// (the header is bytes 0..24, the body starts at 24).
    #[error("reserved byte at offset {offset} is not zero")]
    ReservedNotZero { offset: usize },
    /// A response carries a status code the table does not name.
    #[error("unknown status {status}")]
    UnknownStatus { status: u16 },
    /// The opcode is not in the table. The frame's length is trustworthy, so the
    /// server answers and skips `frame_len` bytes instead of closing.
    #[error("unknown opcode {opcode:#04x}")]
    UnknownOpcode { opcode: u8, frame_len: usize },
    /// The body's length does not fit the opcode.
    #[error("body of {len} bytes does not fit opcode {opcode:#04x} (expected {expected})")]
    BadBodyLength { opcode: u8, expected: usize, len: usize },
    /// A length field inside a body is above its limit.
    #[error("{field} of {value} above the limit {max}")]
    FieldTooLarge { field: &'static str, value: u32, max: u32 },
    /// A length or count field outside its range `min..=max` (a zero where
    /// at least one is required, say).
    #[error("{field} of {value} outside {min} to {max}")]
    FieldOutOfRange { field: &'static str, value: u32, min: u32, max: u32 },
    /// An entry of a table inside a body breaks the table's rule (order,
    /// uniqueness, a value outside its domain); `index` counts from 0.
    #[error("{table} entry {index}: {rule}")]
    BadTableEntry { table: &'static str, index: usize, rule: &'static str },
    /// A request arrived where a response was expected, or the other way round.
    #[error("frame direction is wrong (response flag {response})")]
    WrongDirection { response: bool },
}

impl FrameError {
    /// The status the peer is answered with.
    pub fn status(&self) -> Status {
        match self {
            FrameError::UnsupportedVersion { .. } => Status::UnsupportedVersion,
            FrameError::BodyTooLarge { .. } => Status::FrameTooLarge,
            FrameError::UnknownOpcode { .. } => Status::UnknownOpcode,
            _ => Status::MalformedFrame,
        }
    }

    /// Whether the connection can go on after answering this error: only when
    /// the frame's boundaries are known and nothing else was wrong with it.
    pub fn skippable_len(&self) -> Option<usize> {
        match self {
            FrameError::UnknownOpcode { frame_len, .. } => Some(*frame_len),
            _ => None,
        }
    }
}
