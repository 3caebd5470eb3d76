//! Forwarding requests to the shard that owns their envelope, in batches.
//!
//! A connection on the main port may receive frames for any shard. It answers
//! its own shard's frames at once and copies the others, raw, into one buffer
//! per owning shard. After the whole read is handled, each buffer goes to its
//! shard as one [`ForwardBatch`] over glommio's channel mesh; the owner answers
//! every frame into a reply buffer and sends both buffers back, so in steady
//! state the buffers circulate and no buffer is allocated per request. What
//! is made per batch (one batch per connection and read, however many frames
//! it holds) is the task that sends it and one reply channel per owner, and
//! on the owner, for a batch whose answers must wait for its log, the task
//! that waits (so the peer's next batches are answered meanwhile).
//!
//! The routing decision is [`owner_of`]: the envelope id names its shard.

use futures_channel::oneshot;
use glommio::channels::channel_mesh::Senders;
use hongbao_protocol::{EnvelopeId, Request};

/// A batch's buffers coming back: frames emptied, answers filled.
pub type Returned = (Vec<u8>, Vec<u8>);

/// Frames for one shard, and where to send its answers.
#[derive(Debug)]
pub struct ForwardBatch {
    /// Whole request frames, back to back, each already validated.
    pub frames: Vec<u8>,
    /// An empty buffer for the answers (recycled from earlier batches).
    pub answers: Vec<u8>,
    /// Number of frames in `frames`.
    pub count: u64,
    /// Gets `(frames, answers)` back: frames emptied, answers filled.
    pub reply: oneshot::Sender<Returned>,
}

/// The shard that must answer `request`, when it is not `local`.
pub fn owner_of(request: &Request<'_>, local: u16, shard_count: u16) -> Option<u16> {
    let envelope = match request {
        Request::Grab(body) | Request::Open(body) => body.envelope.get(),
        Request::Query(body) => body.envelope.get(),
        _ => return None,
    };
    let owner = EnvelopeId(envelope).shard();
    // An id naming no shard is answered locally: not found.
    (owner != local && owner < shard_count).then_some(owner)
}

/// The most bytes the answer to `request` can take on the wire: what a
/// connection reserves in its output for a frame it forwards, so that the
/// answers coming back stay within its output limit.
pub fn answer_len_max(request: &Request<'_>) -> usize {
    use hongbao_protocol::body::{ClaimEntry, FixedBody, GrabResponse, OpenResponse, QueryResponse};
    use hongbao_protocol::limits::MAX_QUERY_PAGE;
    let body = match request {
        Request::Query(query) => {
            let page = query.page_limit.get().min(MAX_QUERY_PAGE) as usize;
            QueryResponse::SIZE + page * ClaimEntry::SIZE
        }
        _ => GrabResponse::SIZE.max(OpenResponse::SIZE),
    };
    hongbao_protocol::HEADER_LEN + body
}

/// One connection's pending forwards, one buffer per shard.
#[derive(Debug)]
pub struct Forwarder {
    pending: Vec<(Vec<u8>, u64)>,
    /// The most bytes the answers to the pending frames can take.
    answer_bytes: usize,
    spare_answers: Vec<Vec<u8>>,
    waiting: Vec<(usize, oneshot::Receiver<Returned>)>,
}

impl Forwarder {
    /// A forwarder for a server of `shard_count` shards.
    pub fn new(shard_count: u16) -> Forwarder {
        Forwarder {
            pending: (0..shard_count).map(|_| (Vec::new(), 0)).collect(),
            answer_bytes: 0,
            spare_answers: Vec::new(),
            waiting: Vec::new(),
        }
    }

    /// Queues one whole frame for `shard`, whose answer takes at most
    /// `answer_len_max` bytes.
    pub fn push(&mut self, shard: u16, frame: &[u8], answer_len_max: usize) {
        let (buffer, count) = &mut self.pending[usize::from(shard)];
        buffer.extend_from_slice(frame);
        *count += 1;
        self.answer_bytes += answer_len_max;
    }

    /// The most bytes the answers to the pending frames can take.
    pub fn answer_bytes(&self) -> usize {
        self.answer_bytes
    }

    /// Whether anything waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.pending.iter().all(|(_, count)| *count == 0)
    }

    /// Sends every pending batch, waits for all answers and appends them to
    /// `out`. Returns the number of frames forwarded, or `u64::MAX` when a
    /// shard could not be reached (it is stopping): the connection must close.
    pub async fn flush(&mut self, mesh: &Senders<ForwardBatch>, out: &mut Vec<u8>) -> u64 {
        let mut forwarded = 0;
        self.answer_bytes = 0;
        for shard in 0..self.pending.len() {
            let (frames, count) = &mut self.pending[shard];
            if *count == 0 {
                continue;
            }
            forwarded += *count;
            let (reply, answer) = oneshot::channel();
            let batch = ForwardBatch {
                frames: std::mem::take(frames),
                answers: self.spare_answers.pop().unwrap_or_default(),
                count: std::mem::replace(count, 0),
                reply,
            };
            match mesh.send_to(shard, batch).await {
                Ok(()) => self.waiting.push((shard, answer)),
                // The owner is gone (shutting down). Nothing in the batch was
                // done, so closing the connection acknowledges nothing wrongly.
                Err(_) => return self.abandon(),
            }
        }
        for (shard, answer) in std::mem::take(&mut self.waiting) {
            match answer.await {
                Ok((frames, answers)) => {
                    out.extend_from_slice(&answers);
                    self.recycle(shard, frames, answers);
                }
                // The owner dropped the batch (it stopped); its frames are gone
                // with it, so the client sees no answer for them and its
                // connection is closed by the caller.
                Err(_) => return self.abandon(),
            }
        }
        forwarded
    }

    /// A flush that cannot finish: the connection closes, so nothing of it
    /// may be sent again (frames still pending) or waited for (batches sent
    /// to other owners). Returns the flush's "could not reach" count.
    fn abandon(&mut self) -> u64 {
        for (frames, count) in &mut self.pending {
            frames.clear();
            *count = 0;
        }
        self.waiting.clear();
        self.answer_bytes = 0;
        u64::MAX
    }

    /// Bytes of memory its buffers hold.
    pub fn buffer_bytes(&self) -> usize {
        let pending: usize = self.pending.iter().map(|(frames, _)| frames.capacity()).sum();
        pending + self.spare_answers.iter().map(Vec::capacity).sum::<usize>()
    }

    /// An idle connection's forwarder gives back the memory of its empty
    /// buffers (see [`crate::net::buffers::shrink_idle`]).
    pub fn shrink_idle(&mut self) {
        for (frames, _) in &mut self.pending {
            crate::net::buffers::shrink_idle(frames);
        }
        self.spare_answers.clear();
    }

    fn recycle(&mut self, shard: usize, frames: Vec<u8>, answers: Vec<u8>) {
        let frames = crate::net::buffers::recycle(frames);
        if self.pending[shard].0.capacity() < frames.capacity() {
            self.pending[shard].0 = frames;
        }
        if self.spare_answers.len() < self.pending.len() {
            self.spare_answers.push(crate::net::buffers::recycle(answers));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abandoned_flush_leaves_nothing_to_send_or_wait_for() {
        let mut forwarder = Forwarder::new(3);
        forwarder.push(1, &[1; 40], 48);
        forwarder.push(2, &[2; 40], 48);
        let (_reply, answer) = oneshot::channel();
        forwarder.waiting.push((1, answer));
        assert!(!forwarder.is_empty());
        assert_eq!(forwarder.abandon(), u64::MAX);
        assert!(forwarder.is_empty(), "no frame of a given-up connection runs later");
        assert!(forwarder.waiting.is_empty() && forwarder.answer_bytes() == 0);
    }
}
