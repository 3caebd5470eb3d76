//! The client's half of the [`hot_path`](crate::hot_path): GRAB and OPEN
//! requests written with one copy, and their answers read in one pass.
//!
//! A storm client (the load generator, chiefly) sends and reads GRABs and
//! OPENs by the million. A request is a header and a 16-byte body with no
//! choice in it, so it is written as one 40-byte struct. An answer is a header
//! and a fixed body (24 bytes for GRAB, 16 for OPEN) with every status but the
//! frame-level ones (which carry no body); [`read_envelope_user_response`]
//! checks the header as two 64-bit words and the body's reserved bytes, and
//! answers `Some` exactly for the frames that [`decode_frame`] and
//! [`Response::fixed`] read as a GRAB or OPEN answer with its body (a test
//! holds the two to the same bytes). Anything else goes to the general
//! decoder, which says what is wrong with it.
//!
//! [`decode_frame`]: crate::decode_frame
//! [`Response::fixed`]: crate::response::Response::fixed

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::body::{EnvelopeUser, FixedBody, GrabResponse, OpenResponse};
use crate::header::{Header, FLAG_RESPONSE, HEADER_LEN, MAGIC, VERSION};
use crate::hot_path::EnvelopeUserOp;
use crate::opcode::Opcode;
use crate::status::Status;

/// A GRAB or OPEN request frame, header and body as one wire struct.
#[derive(Clone, Copy, Debug, IntoBytes, Immutable, Unaligned)]
#[repr(C)]
struct RequestFrame {
    header: Header,
    body: EnvelopeUser,
}

const _: () = assert!(core::mem::size_of::<RequestFrame>() == HEADER_LEN + EnvelopeUser::SIZE);

/// Appends a GRAB or OPEN request: the same bytes as
/// [`Request::encode`](crate::Request::encode), in one copy.
#[inline]
pub fn write_envelope_user_request(
    out: &mut Vec<u8>,
    op: EnvelopeUserOp,
    request_id: u64,
    envelope: u64,
    user: u64,
) {
    let frame = RequestFrame {
        header: Header::request(op.opcode(), request_id, EnvelopeUser::SIZE as u32),
        body: EnvelopeUser { envelope: U64::new(envelope), user: U64::new(user) },
    };
    out.extend_from_slice(frame.as_bytes());
}

/// A GRAB or OPEN answer read by [`read_envelope_user_response`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeUserResponse {
    /// The request id it echoes.
    pub request_id: u64,
    /// Its status (never a frame-level one: those carry no body).
    pub status: Status,
    /// Its body.
    pub body: EnvelopeUserAnswer,
}

/// The fixed body of a GRAB or OPEN answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeUserAnswer {
    /// GRAB's.
    Grab(GrabResponse),
    /// OPEN's.
    Open(OpenResponse),
}

impl EnvelopeUserAnswer {
    /// The opcode it answers.
    pub fn opcode(&self) -> Opcode {
        match self {
            EnvelopeUserAnswer::Grab(_) => Opcode::Grab,
            EnvelopeUserAnswer::Open(_) => Opcode::Open,
        }
    }
}

/// The header's first 16 bytes (all but the request id) as two words.
#[derive(Clone, Copy, Debug, FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct HeadWords {
    low: U64,
    high: U64,
    request_id: U64,
}

const _: () = assert!(core::mem::size_of::<HeadWords>() == HEADER_LEN);

/// The low word of a GRAB or OPEN answer's header with status 0: magic,
/// version, opcode, the response flag, a zero reserved byte; the status is
/// the top 16 bits.
const fn response_low(opcode: Opcode) -> u64 {
    u64::from_le_bytes([MAGIC[0], MAGIC[1], VERSION, opcode as u8, FLAG_RESPONSE, 0, 0, 0])
}

/// The high word: the body length, and four zero reserved bytes.
const fn response_high(body_len: usize) -> u64 {
    body_len as u64
}

const STATUS_SHIFT: u32 = 48;
const GRAB_LOW: u64 = response_low(Opcode::Grab);
const OPEN_LOW: u64 = response_low(Opcode::Open);
const GRAB_HIGH: u64 = response_high(GrabResponse::SIZE);
const OPEN_HIGH: u64 = response_high(OpenResponse::SIZE);

/// The whole GRAB or OPEN answer at the front of `buf`, with its length on the
/// wire; `None` for anything else, or too few bytes yet (read those with the
/// general decoder). Never panics.
#[inline]
pub fn read_envelope_user_response(buf: &[u8]) -> Option<(EnvelopeUserResponse, usize)> {
    let (head, rest) = HeadWords::ref_from_prefix(buf).ok()?;
    let low = head.low.get();
    let high = head.high.get();
    let status = Status::from_u16((low >> STATUS_SHIFT) as u16)?;
    if status.is_frame_level() {
        return None;
    }
    let body = match (low & ((1 << STATUS_SHIFT) - 1), high) {
        (GRAB_LOW, GRAB_HIGH) => EnvelopeUserAnswer::Grab(fixed(rest)?),
        (OPEN_LOW, OPEN_HIGH) => EnvelopeUserAnswer::Open(fixed(rest)?),
        _ => return None,
    };
    let len = HEADER_LEN + high as usize;
    Some((EnvelopeUserResponse { request_id: head.request_id.get(), status, body }, len))
}

/// A fixed body at the front of `bytes` whose reserved bytes are zero.
#[inline]
fn fixed<T: FixedBody + FromBytes>(bytes: &[u8]) -> Option<T> {
    let (body, _) = T::read_from_prefix(bytes).ok()?;
    body.reserved_not_zero().is_none().then_some(body)
}

#[cfg(test)]
mod tests {
    use zerocopy::little_endian::U32;

    use super::*;
    use crate::codec::write_response;
    use crate::{decode_frame, Request};

    #[test]
    fn requests_are_the_general_encoders_bytes() {
        for (op, request) in [
            (EnvelopeUserOp::Grab, Request::Grab(EnvelopeUser { envelope: U64::new(7), user: U64::new(9) })),
            (EnvelopeUserOp::Open, Request::Open(EnvelopeUser { envelope: U64::new(7), user: U64::new(9) })),
        ] {
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            write_envelope_user_request(&mut fast, op, 0x0102_0304_0506_0708, 7, 9);
            request.encode(0x0102_0304_0506_0708, &mut general);
            assert_eq!(fast, general);
        }
    }

    #[test]
    fn answers_read_as_the_general_decoder_reads_them() {
        let grab = GrabResponse {
            hold_until_ms: U64::new(5),
            amount_cents: U64::new(6),
            shares_free: U32::new(7),
            reserved: U32::new(0),
        };
        let open = OpenResponse { amount_cents: U64::new(8), order: U32::new(2), reserved: U32::new(0) };
        for status in Status::ALL.iter().copied().filter(|s| !s.is_frame_level()) {
            let mut bytes = Vec::new();
            write_response(&mut bytes, Opcode::Grab as u8, 11, status, &[grab.as_bytes()]);
            write_response(&mut bytes, Opcode::Open as u8, 12, status, &[open.as_bytes()]);
            let (first, len) = read_envelope_user_response(&bytes).expect("a GRAB answer");
            assert_eq!(
                (first, len),
                (EnvelopeUserResponse { request_id: 11, status, body: EnvelopeUserAnswer::Grab(grab) }, 48)
            );
            let (second, _) = read_envelope_user_response(&bytes[len..]).expect("an OPEN answer");
            assert_eq!(second.body, EnvelopeUserAnswer::Open(open));
            assert_eq!(decode_frame(&bytes).unwrap().unwrap().wire_len(), len);
        }
    }

    /// What the general decoder makes of `bytes`, in the fast reader's terms.
    fn general_read(bytes: &[u8]) -> Option<(EnvelopeUserResponse, usize)> {
        let frame = decode_frame(bytes).ok()??;
        let response = crate::response::Response::from_frame(&frame).ok()?;
        if response.status.is_frame_level() {
            return None;
        }
        let body = match Opcode::from_u8(response.opcode)? {
            Opcode::Grab => EnvelopeUserAnswer::Grab(response.fixed().ok()?),
            Opcode::Open => EnvelopeUserAnswer::Open(response.fixed().ok()?),
            _ => return None,
        };
        let answer = EnvelopeUserResponse { request_id: response.request_id, status: response.status, body };
        Some((answer, frame.wire_len()))
    }

    #[test]
    fn every_changed_byte_is_judged_as_the_general_decoder_judges_it() {
        let mut answers = Vec::new();
        write_response(&mut answers, Opcode::Open as u8, 1, Status::Ok, &[&[0; 16]]);
        write_response(&mut answers, Opcode::Grab as u8, 2, Status::SoldOut, &[&[0; 24]]);
        let open_len = HEADER_LEN + OpenResponse::SIZE;
        for bytes in [&answers[..], &answers[open_len..]] {
            assert!(read_envelope_user_response(bytes).is_some());
            for cut in 0..bytes.len() {
                assert_eq!(read_envelope_user_response(&bytes[..cut]), general_read(&bytes[..cut]));
            }
            for at in 0..bytes.len() {
                for flip in [0x01, 0x40, 0x80, 0xff] {
                    let mut changed = bytes.to_vec();
                    changed[at] ^= flip;
                    assert_eq!(
                        read_envelope_user_response(&changed),
                        general_read(&changed),
                        "byte {at} ^ {flip:#x}"
                    );
                }
            }
        }
        // A frame-level status with a body is malformed, not an answer.
        let mut framed = Vec::new();
        write_response(&mut framed, Opcode::Grab as u8, 1, Status::MalformedFrame, &[&[0; 24]]);
        assert!(read_envelope_user_response(&framed).is_none());
        // A request is not an answer.
        let mut request = Vec::new();
        write_envelope_user_request(&mut request, EnvelopeUserOp::Open, 1, 2, 3);
        assert!(read_envelope_user_response(&request).is_none());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_are_judged_as_the_general_decoder_judges_them(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            proptest::prop_assert_eq!(read_envelope_user_response(&bytes), general_read(&bytes));
        }
    }
}
