//! GRAB and OPEN in one pass: nearly every frame of a storm, read and answered
//! without the general decoder's steps.
//!
//! A valid GRAB or OPEN request has only one possible first 16 bytes: magic,
//! version, its opcode, no flags, zero reserved bytes and status, a body
//! length of 16. Its body has no reserved field. So comparing those 16 bytes
//! with the two expected values decides, in one step, everything that
//! [`decode_frame`](crate::decode_frame) and [`Request::decode`](crate::Request::decode)
//! would: [`read_envelope_user_request`] answers `Some` exactly for the frames
//! they decode as GRAB or OPEN, with the same fields (a test checks this
//! against the general decoder). Anything else, every malformed frame
//! included, gets `None` and goes through the general decoder, which judges it.
//!
//! The answers have fixed-size bodies too, so a response is written as one
//! header-and-body struct: one copy, one capacity check.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::body::{EnvelopeUser, FixedBody, GrabResponse, OpenResponse};
use crate::header::{Header, FLAG_RESPONSE, HEADER_LEN, MAGIC, VERSION};
use crate::opcode::Opcode;
use crate::status::Status;

/// Bytes of a whole GRAB or OPEN request frame.
pub const ENVELOPE_USER_FRAME_LEN: usize = HEADER_LEN + EnvelopeUser::SIZE;

/// A GRAB or OPEN request frame as it lies on the wire.
#[derive(Clone, Copy, Debug, FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct EnvelopeUserFrame {
    /// The header's first 16 bytes (everything but the request id), read
    /// as two words so that judging them is two comparisons.
    head: [U64; 2],
    request_id: U64,
    body: EnvelopeUser,
}

const _: () = assert!(core::mem::size_of::<EnvelopeUserFrame>() == ENVELOPE_USER_FRAME_LEN);

/// The first 16 header bytes of every valid request with `opcode` and a
/// 16-byte body (checked against [`Header::request`] by a test).
const fn request_head(opcode: Opcode) -> [u8; 16] {
    let len = (EnvelopeUser::SIZE as u32).to_le_bytes();
    [MAGIC[0], MAGIC[1], VERSION, opcode as u8, 0, 0, 0, 0, len[0], len[1], len[2], len[3], 0, 0, 0, 0]
}

/// `head`'s words as little-endian integers.
const fn head_words(head: [u8; 16]) -> [u64; 2] {
    let mut low = [0; 8];
    let mut high = [0; 8];
    let mut i = 0;
    while i < 8 {
        low[i] = head[i];
        high[i] = head[8 + i];
        i += 1;
    }
    [u64::from_le_bytes(low), u64::from_le_bytes(high)]
}

/// The first word of a valid GRAB's and OPEN's header; they differ only there,
/// in the opcode.
const GRAB_HEAD_LOW: u64 = head_words(request_head(Opcode::Grab))[0];
const OPEN_HEAD_LOW: u64 = head_words(request_head(Opcode::Open))[0];
/// The second word of both: the body length, and zero reserved bytes.
const HEAD_HIGH: u64 = head_words(request_head(Opcode::Grab))[1];

const _: () = assert!(head_words(request_head(Opcode::Open))[1] == HEAD_HIGH);

/// The two requests the hot path reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeUserOp {
    /// GRAB.
    Grab,
    /// OPEN.
    Open,
}

impl EnvelopeUserOp {
    /// The opcode.
    pub const fn opcode(self) -> Opcode {
        match self {
            EnvelopeUserOp::Grab => Opcode::Grab,
            EnvelopeUserOp::Open => Opcode::Open,
        }
    }
}

/// A GRAB or OPEN request read by [`read_envelope_user_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeUserRequest {
    /// GRAB or OPEN.
    pub op: EnvelopeUserOp,
    /// The request id, for the answer to echo.
    pub request_id: u64,
    /// The envelope and the user.
    pub body: EnvelopeUser,
}

/// The whole, valid GRAB or OPEN request frame at the front of `buf`, which
/// is [`ENVELOPE_USER_FRAME_LEN`] bytes long; `None` for anything else (read
/// it with the general decoder). Never panics.
#[inline]
pub fn read_envelope_user_request(buf: &[u8]) -> Option<EnvelopeUserRequest> {
    let (frame, _) = EnvelopeUserFrame::ref_from_prefix(buf).ok()?;
    let [low, high] = [frame.head[0].get(), frame.head[1].get()];
    let op = match low {
        GRAB_HEAD_LOW if high == HEAD_HIGH => EnvelopeUserOp::Grab,
        OPEN_HEAD_LOW if high == HEAD_HIGH => EnvelopeUserOp::Open,
        _ => return None,
    };
    Some(EnvelopeUserRequest { op, request_id: frame.request_id.get(), body: frame.body })
}

/// A response frame with a fixed body, header and body as one wire struct.
#[derive(Clone, Copy, Debug, IntoBytes, Immutable, Unaligned)]
#[repr(C)]
struct FixedResponseFrame<B> {
    header: Header,
    body: B,
}

const _: () =
    assert!(core::mem::size_of::<FixedResponseFrame<GrabResponse>>() == HEADER_LEN + GrabResponse::SIZE);
const _: () =
    assert!(core::mem::size_of::<FixedResponseFrame<OpenResponse>>() == HEADER_LEN + OpenResponse::SIZE);

/// Appends GRAB's response: the same bytes as
/// [`write_response`](crate::codec::write_response) with the body's bytes as
/// its one part, in one copy.
#[inline]
pub fn write_grab_response(out: &mut Vec<u8>, request_id: u64, status: Status, body: &GrabResponse) {
    write_fixed(out, Opcode::Grab, request_id, status, body);
}

/// Appends OPEN's response, as [`write_grab_response`] does GRAB's.
#[inline]
pub fn write_open_response(out: &mut Vec<u8>, request_id: u64, status: Status, body: &OpenResponse) {
    write_fixed(out, Opcode::Open, request_id, status, body);
}

#[inline]
fn write_fixed<B: FixedBody + Unaligned>(
    out: &mut Vec<u8>,
    opcode: Opcode,
    request_id: u64,
    status: Status,
    body: &B,
) {
    let header = Header {
        magic: MAGIC,
        version: VERSION,
        opcode: opcode as u8,
        flags: FLAG_RESPONSE,
        reserved0: 0,
        status: U16::new(status as u16),
        body_len: U32::new(B::SIZE as u32),
        reserved1: U32::new(0),
        request_id: U64::new(request_id),
    };
    let frame = FixedResponseFrame { header, body: *body };
    out.extend_from_slice(frame.as_bytes());
}
