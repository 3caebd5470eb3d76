//! Splitting a byte stream into frames, and writing frames into a buffer.
//!
//! [`decode_frame`] looks at the front of a receive buffer and answers one of:
//! a whole frame (borrowed, no copy of the body), "not yet" (`Ok(None)`), or the
//! reason the bytes can never become a frame. The header is judged as soon as its
//! 24 bytes are in, so an oversized length is refused before its body arrives.

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, IntoBytes};

use crate::error::FrameError;
use crate::header::{Header, HEADER_LEN};
use crate::opcode::Opcode;
use crate::status::Status;

/// One whole frame at the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The validated header.
    pub header: Header,
    /// Exactly `header.body_len` bytes.
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// Bytes this frame takes on the wire.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// The request id.
    pub fn request_id(&self) -> u64 {
        self.header.request_id.get()
    }
}

/// Decodes the frame at the front of `buf`, if it is whole.
///
/// * `Ok(Some(frame))`: a whole, valid frame; consume `frame.wire_len()` bytes.
///   A request's opcode is in the table; a response's opcode is the raw byte
///   its request carried, which may not be.
/// * `Ok(None)`: the bytes so far are a valid beginning; read more.
/// * `Err(e)`: the bytes can never be a valid frame. If
///   `e.skippable_len()` is `Some(n)`, the next `n` bytes are one frame that
///   can be answered with `e.status()` and skipped; otherwise the stream is lost.
pub fn decode_frame(buf: &[u8]) -> Result<Option<Frame<'_>>, FrameError> {
    let Ok((header, rest)) = Header::read_from_prefix(buf) else {
        // Judge what there is of the magic early, so garbage is refused at once.
        let seen = buf.len().min(crate::header::MAGIC.len());
        if buf[..seen] != crate::header::MAGIC[..seen] {
            let found = [buf[0], buf.get(1).copied().unwrap_or(0)];
            return Err(FrameError::BadMagic { found });
        }
        return Ok(None);
    };
    header.validate()?;
    let body_len = header.body_len.get() as usize;
    let Some(body) = rest.get(..body_len) else {
        return Ok(None);
    };
    // Only a request's opcode is judged: a response echoes its request's opcode
    // byte, and the answer to an unknown opcode (or to a frame whose header was
    // unreadable, opcode 0) must still reach the client that sent it.
    if !header.is_response() && header.opcode().is_none() {
        return Err(FrameError::UnknownOpcode { opcode: header.opcode, frame_len: HEADER_LEN + body_len });
    }
    Ok(Some(Frame { header, body }))
}

/// How many more bytes the frame whose first bytes are `partial` needs: first
/// the rest of the header, then the body it announces. A reader that keeps a
/// partial frame from one receive copies only this many bytes of the next
/// one, answers that frame, and reads the rest of the receive in place.
/// A length beyond the protocol's limit counts as the limit: the decoder
/// refuses such a frame as soon as its header is whole.
pub fn bytes_to_complete(partial: &[u8]) -> usize {
    if partial.len() < HEADER_LEN {
        return HEADER_LEN - partial.len();
    }
    let body_len = u32::from_le_bytes([partial[8], partial[9], partial[10], partial[11]]);
    let body_len = body_len.min(crate::limits::MAX_BODY_LEN) as usize;
    (HEADER_LEN + body_len).saturating_sub(partial.len())
}

/// Appends a whole frame: `header` (whose `body_len` is set here) and the
/// concatenation of `parts` as its body.
pub fn write_frame(out: &mut Vec<u8>, mut header: Header, parts: &[&[u8]]) {
    let body_len: usize = parts.iter().map(|p| p.len()).sum();
    header.body_len = U32::new(u32::try_from(body_len).expect("body length fits u32"));
    out.extend_from_slice(header.as_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Appends a response frame with a body made of `parts`.
pub fn write_response(out: &mut Vec<u8>, opcode: u8, request_id: u64, status: Status, parts: &[&[u8]]) {
    write_frame(out, Header::response(opcode, request_id, status, 0), parts);
}

/// Appends a request frame with a body made of `parts`.
pub fn write_request(out: &mut Vec<u8>, opcode: Opcode, request_id: u64, parts: &[&[u8]]) {
    write_frame(out, Header::request(opcode, request_id, 0), parts);
}

/// A response whose body is appended piece by piece (QUERY's claims page), then
/// closed with [`ResponseBuilder::finish`], which writes the body length.
#[derive(Debug)]
pub struct ResponseBuilder {
    start: usize,
}

impl ResponseBuilder {
    /// Starts a response frame at the end of `out`.
    pub fn begin(out: &mut Vec<u8>, opcode: u8, request_id: u64, status: Status) -> ResponseBuilder {
        let start = out.len();
        out.extend_from_slice(Header::response(opcode, request_id, status, 0).as_bytes());
        ResponseBuilder { start }
    }

    /// Writes the body length of the frame begun at `self.start`.
    pub fn finish(self, out: &mut [u8]) {
        let body_len = out.len() - self.start - HEADER_LEN;
        let body_len = u32::try_from(body_len).expect("body length fits u32");
        assert!(body_len <= crate::limits::MAX_BODY_LEN, "response body above the limit");
        out[self.start + 8..self.start + 12].copy_from_slice(&body_len.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, Status};

    #[test]
    fn a_partial_frame_needs_the_rest_of_its_header_then_its_body() {
        let mut frame = Vec::new();
        write_response(&mut frame, 0x11, 9, Status::Ok, &[&[0; 24]]);
        for cut in 0..frame.len() {
            let need = bytes_to_complete(&frame[..cut]);
            if cut < HEADER_LEN {
                assert_eq!(need, HEADER_LEN - cut);
            } else {
                assert_eq!(cut + need, frame.len());
            }
        }
        assert_eq!(bytes_to_complete(&frame), 0);
        let mut ping = Vec::new();
        Request::Ping.encode(1, &mut ping);
        assert_eq!(bytes_to_complete(&ping), 0);
        let mut huge = ping.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(bytes_to_complete(&huge), crate::limits::MAX_BODY_LEN as usize, "capped at the limit");
    }
}
