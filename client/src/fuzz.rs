//! The body of the `frame_decoder` fuzz target, here so that the fuzzer and
//! the corpus regression test run the very same code: arbitrary bytes through
//! the frame, request, response and answer decoders. Nothing may panic; a
//! request that decodes must encode back to its bytes.

use hongbao_protocol::response::Response;
use hongbao_protocol::{decode_frame, Opcode, Request};

/// Feeds `data` as a stream of frames to every decoder.
pub fn frames(data: &[u8]) {
    let mut at = 0;
    while at < data.len() {
        let frame = match decode_frame(&data[at..]) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => match error.skippable_len() {
                Some(len) => {
                    at += len;
                    continue;
                }
                None => break,
            },
        };
        let bytes = &data[at..at + frame.wire_len()];
        if let Ok(request) = Request::decode(&frame) {
            let mut encoded = Vec::new();
            request.encode(frame.request_id(), &mut encoded);
            assert_eq!(encoded, bytes, "a decoded request encodes back to its bytes");
        }
        if let Ok(response) = Response::from_frame(&frame) {
            for opcode in Opcode::ALL {
                let _ = crate::answer::decode(opcode, &response);
            }
            let _ = response.hello().map(|(_, ports)| ports.iter().count());
            let _ = response.query().map(|(_, claims)| claims.iter().count());
            // A STATS answer that decodes converts to owned figures, whatever it holds.
            let _ = crate::stats::StatsAnswer::decode(&response).map(|stats| stats.shard_stats());
        }
        at += frame.wire_len();
    }
}
