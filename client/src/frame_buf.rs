//! The receive buffer both clients read frames out of.
//!
//! It is allocated once, at twice the largest frame, and never grows: a peer's
//! length is only ever compared against it (the codec refuses a `body_len`
//! above `MAX_BODY_LEN` before the body arrives). Whole frames are handed out
//! as borrows; the unread tail is moved to the front only when the room left
//! behind it could not take a whole frame, so a copy happens at most once per
//! `MAX_FRAME_LEN` bytes read.

use hongbao_protocol::limits::MAX_FRAME_LEN;
use hongbao_protocol::{decode_frame, Frame, FrameError};

/// Bytes the buffer holds. Two frames' worth, so that after compaction there is
/// always room for the rest of a partial frame.
pub(crate) const RECV_BUF_LEN: usize = 2 * MAX_FRAME_LEN;

/// A fixed receive buffer: `buf[start..end]` is read but not yet consumed.
#[derive(Debug)]
pub(crate) struct FrameBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl FrameBuf {
    pub(crate) fn new() -> FrameBuf {
        FrameBuf { buf: vec![0; RECV_BUF_LEN].into_boxed_slice(), start: 0, end: 0 }
    }

    /// Bytes read and not yet handed out.
    #[cfg(test)]
    pub(crate) fn unread_len(&self) -> usize {
        self.end - self.start
    }

    /// Whether a whole frame is at the front. An error means the stream can
    /// never yield a valid frame again.
    pub(crate) fn has_frame(&self) -> Result<bool, FrameError> {
        Ok(self.front()?.is_some())
    }

    /// The whole frame at the front, if there is one, left in place: a
    /// caller that only needs to see whose answer it is (and perhaps skip
    /// it with [`FrameBuf::next_frame`]) borrows the buffer immutably.
    pub(crate) fn front(&self) -> Result<Option<Frame<'_>>, FrameError> {
        decode_frame(&self.buf[self.start..self.end])
    }

    /// Takes the whole frame at the front, if there is one.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        let Some(len) = decode_frame(&self.buf[self.start..self.end])?.map(|f| f.wire_len()) else {
            return Ok(None);
        };
        let start = self.start;
        self.start += len;
        assert!(self.start <= self.end);
        decode_frame(&self.buf[start..start + len])
    }

    /// Room to read into. Call only when no whole frame is at the front, so
    /// that what is unread is less than one frame and compaction makes room.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < MAX_FRAME_LEN {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        assert!(self.end < self.buf.len(), "a partial frame fills the receive buffer");
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`FrameBuf::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len());
        self.end += n;
    }
}

#[cfg(test)]
mod tests {
    use hongbao_protocol::codec::write_response;
    use hongbao_protocol::{Opcode, Status};

    use super::*;

    fn push(fb: &mut FrameBuf, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let spare = fb.spare();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            fb.filled(n);
            bytes = &bytes[n..];
        }
    }

    #[test]
    fn frames_split_across_reads_come_out_whole_and_in_order() {
        let mut wire = Vec::new();
        let body = [7u8; 1000];
        for id in 0..200u64 {
            write_response(&mut wire, Opcode::Ping as u8, id, Status::Ok, &[&body[..(id as usize * 5)]]);
        }
        let mut fb = FrameBuf::new();
        let mut next_id = 0u64;
        // Odd-sized reads put frame boundaries everywhere and force compaction.
        for chunk in wire.chunks(4093) {
            let mut chunk = chunk;
            while !chunk.is_empty() {
                let n = fb.spare().len().min(chunk.len());
                push(&mut fb, &chunk[..n]);
                chunk = &chunk[n..];
                while let Some(frame) = fb.next_frame().unwrap() {
                    assert_eq!(frame.request_id(), next_id);
                    assert_eq!(frame.body.len(), next_id as usize * 5);
                    next_id += 1;
                }
            }
        }
        assert_eq!(next_id, 200);
        assert_eq!(fb.unread_len(), 0);
    }

    #[test]
    fn garbage_is_an_error_not_a_wait() {
        let mut fb = FrameBuf::new();
        push(&mut fb, b"GET / HTTP/1.1\r\n");
        assert!(matches!(fb.has_frame(), Err(FrameError::BadMagic { .. })));
    }
}
