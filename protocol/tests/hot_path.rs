//! The one-pass GRAB and OPEN reader and writers agree with the general codec:
//! `read_envelope_user_request` reads exactly the frames `decode_frame` and
//! `Request::decode` decode as GRAB or OPEN, with the same fields, and refuses
//! everything else (the general path then judges it); the fixed response
//! writers write the bytes `write_response` writes.

use hongbao_protocol::body::{EnvelopeUser, GrabResponse, OpenResponse};
use hongbao_protocol::codec::write_response;
use hongbao_protocol::hot_path::{
    read_envelope_user_request, write_grab_response, write_open_response, EnvelopeUserOp,
    EnvelopeUserRequest, ENVELOPE_USER_FRAME_LEN,
};
use hongbao_protocol::{decode_frame, Opcode, Request, Status};
use proptest::prelude::*;
use zerocopy::little_endian::{U32, U64};
use zerocopy::IntoBytes;

/// What the general decoder makes of the front of `bytes`, as the hot path
/// would report it: `Some` only for a whole GRAB or OPEN.
fn general(bytes: &[u8]) -> Option<EnvelopeUserRequest> {
    let frame = decode_frame(bytes).ok()??;
    let (op, body) = match Request::decode(&frame).ok()? {
        Request::Grab(body) => (EnvelopeUserOp::Grab, body),
        Request::Open(body) => (EnvelopeUserOp::Open, body),
        _ => return None,
    };
    assert_eq!(frame.wire_len(), ENVELOPE_USER_FRAME_LEN);
    assert_eq!(frame.header.opcode, op.opcode() as u8);
    Some(EnvelopeUserRequest { op, request_id: frame.request_id(), body })
}

fn envelope_user_frame(opcode: Opcode, request_id: u64, envelope: u64, user: u64) -> Vec<u8> {
    let body = EnvelopeUser { envelope: U64::new(envelope), user: U64::new(user) };
    let request = if opcode == Opcode::Grab { Request::Grab(body) } else { Request::Open(body) };
    let mut out = Vec::new();
    request.encode(request_id, &mut out);
    out
}

/// A GRAB or OPEN frame, then edits: bytes changed (mostly in the header),
/// cut short, or followed by more bytes.
fn near_envelope_user_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(Opcode::Grab), Just(Opcode::Open)],
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec((0usize..40, any::<u8>()), 0..3),
        prop_oneof![3 => Just(None), 1 => (0usize..=40).prop_map(Some)],
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(opcode, id, envelope, user, edits, cut, tail)| {
            let mut bytes = envelope_user_frame(opcode, id, envelope, user);
            for (at, value) in edits {
                // Header bytes (0..16) most of the time, where the checks are.
                bytes[if at < 32 { at % 16 } else { at }] = value;
            }
            if let Some(len) = cut {
                bytes.truncate(len);
            }
            bytes.extend_from_slice(&tail);
            bytes
        })
}

#[test]
fn every_request_of_the_table_is_read_only_if_grab_or_open() {
    for opcode in Opcode::ALL {
        for len in [0u32, 16, 24] {
            let mut bytes = envelope_user_frame(Opcode::Grab, 7, 1, 2);
            bytes[3] = opcode as u8;
            bytes[8..12].copy_from_slice(&len.to_le_bytes());
            bytes.resize(24 + len as usize, 0);
            assert_eq!(read_envelope_user_request(&bytes), general(&bytes), "{opcode} with {len} bytes");
        }
    }
    let grab = envelope_user_frame(Opcode::Grab, 9, 0x0001_0000_0000_0001, 20_002);
    let read = read_envelope_user_request(&grab).expect("a GRAB");
    assert_eq!((read.op, read.request_id, read.body.user.get()), (EnvelopeUserOp::Grab, 9, 20_002));
    assert_eq!(read_envelope_user_request(&grab[..39]), None, "a frame cut short");
    assert_eq!(read_envelope_user_request(&[]), None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn the_hot_reader_agrees_with_the_general_decoder(bytes in near_envelope_user_frame()) {
        prop_assert_eq!(read_envelope_user_request(&bytes), general(&bytes));
    }

    #[test]
    fn the_hot_reader_agrees_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(read_envelope_user_request(&bytes), general(&bytes));
    }

    #[test]
    fn the_fixed_writers_write_what_write_response_writes(
        request_id in any::<u64>(),
        status in prop::sample::select(Status::ALL.to_vec()),
        a in any::<u64>(),
        b in any::<u64>(),
        c in any::<u32>(),
    ) {
        let grab = GrabResponse {
            hold_until_ms: U64::new(a),
            amount_cents: U64::new(b),
            shares_free: U32::new(c),
            reserved: U32::new(0),
        };
        let (mut hot, mut general) = (Vec::new(), Vec::new());
        write_grab_response(&mut hot, request_id, status, &grab);
        write_response(&mut general, Opcode::Grab as u8, request_id, status, &[grab.as_bytes()]);
        prop_assert_eq!(&hot, &general);

        let open = OpenResponse { amount_cents: U64::new(a), order: U32::new(c), reserved: U32::new(0) };
        let (mut hot, mut general) = (vec![1, 2, 3], vec![1, 2, 3]);
        write_open_response(&mut hot, request_id, status, &open);
        write_response(&mut general, Opcode::Open as u8, request_id, status, &[open.as_bytes()]);
        prop_assert_eq!(&hot, &general);
    }
}
