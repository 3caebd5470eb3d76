//! The body of the `frame_decoder` fuzz target, here so that the fuzzer and
//! the corpus regression test run the very same code: arbitrary bytes through
//! the frame, request, response and answer decoders. Nothing may panic; a
//! request that decodes must encode back to its bytes, and the GRAB and OPEN
//! fast paths (server and client side) must judge every frame exactly as the
//! general decoders do.

use hongbao_protocol::hot_path::read_envelope_user_request;
use hongbao_protocol::hot_path_client::read_envelope_user_response;
use hongbao_protocol::response::Response;
use hongbao_protocol::{decode_frame, Opcode, Request};

/// Feeds `data` as a stream of frames to every decoder.
pub fn frames(data: &[u8]) {
    let mut at = 0;
    while at < data.len() {
        let fast_request = read_envelope_user_request(&data[at..]);
        let fast_response = read_envelope_user_response(&data[at..]);
        let frame = match decode_frame(&data[at..]) {
            Ok(Some(frame)) => frame,
            other => {
                assert!(fast_request.is_none() && fast_response.is_none(), "a fast path read {other:?}");
                match other {
                    Err(error) => match error.skippable_len() {
                        Some(len) => {
                            at += len;
                            continue;
                        }
                        None => break,
                    },
                    _ => break,
                }
            }
        };
        same_as_general(&frame, fast_request, fast_response);
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

/// The fast paths' reading of a frame against the general decoders'.
fn same_as_general(
    frame: &hongbao_protocol::Frame<'_>,
    fast_request: Option<hongbao_protocol::hot_path::EnvelopeUserRequest>,
    fast_response: Option<(hongbao_protocol::hot_path_client::EnvelopeUserResponse, usize)>,
) {
    let general_request = match Request::decode(frame) {
        Ok(Request::Grab(body)) => Some((Opcode::Grab, body)),
        Ok(Request::Open(body)) => Some((Opcode::Open, body)),
        _ => None,
    };
    let fast = fast_request.map(|r| (r.op.opcode(), r.body));
    assert_eq!(fast, general_request, "the server's fast path reads a request as the decoder does");
    if let Some(r) = fast_request {
        assert_eq!(r.request_id, frame.request_id());
    }
    let general_answer = Response::from_frame(frame).ok().and_then(|response| {
        let opcode = Opcode::from_u8(response.opcode).filter(|o| matches!(o, Opcode::Grab | Opcode::Open))?;
        let answer = crate::answer::decode_unchecked(opcode, &response).ok()?;
        // Whether the answer keeps the money rules, judged the same way.
        let kept = crate::answer::decode(opcode, &response).is_ok();
        // A frame-level refusal decodes with an empty body; the fast path
        // leaves those to the decoder.
        (!response.body.is_empty()).then(|| (format!("{answer:?}"), kept))
    });
    let fast_answer = fast_response.map(|(r, len)| {
        assert_eq!(len, frame.wire_len());
        let answer =
            crate::answer::from_envelope_user_unchecked(r.body.opcode(), &r).expect("its own opcode");
        let kept = crate::answer::from_envelope_user(r.body.opcode(), &r).is_ok();
        (format!("{answer:?}"), kept)
    });
    assert_eq!(fast_answer, general_answer, "the client's fast path reads an answer as the decoder does");
}
