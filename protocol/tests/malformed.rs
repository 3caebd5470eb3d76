//! Frames that are cut short or wrong in every way docs/PROTOCOL.md section 2.6
//! lists: each must be refused with the typed error that names the fault, the
//! status the peer is answered with, and (only for an unknown opcode) the length
//! that lets the server skip it. Nothing here may panic.

use hongbao_protocol::body::{
    ClaimEntry, CreateRequest, CreateResponse, EnvelopeUser, FixedBody, GrabResponse, HelloRequest,
    HelloResponse, OpenResponse, QueryRequest, QueryResponse, StatsResponse,
};
use hongbao_protocol::codec::{write_frame, write_response};
use hongbao_protocol::header::FLAG_RESPONSE;
use hongbao_protocol::limits::{MAX_BODY_LEN, MAX_QUERY_PAGE, MAX_SHARDS, MAX_TOKEN_LEN};
use hongbao_protocol::response::Response;
use hongbao_protocol::{decode_frame, FrameError, Header, Opcode, Request, Status, HEADER_LEN};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromZeros, IntoBytes};

/// A request frame with `body` and a header changed by `edit`. The body length
/// is `body.len()` unless `edit` sets it.
fn raw_request(opcode: u8, body: &[u8], edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut header = Header::request(Opcode::Ping, 42, body.len() as u32);
    header.opcode = opcode;
    edit(&mut header);
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// A response frame with `status` and `body`.
fn raw_response(opcode: Opcode, status: Status, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_response(&mut out, opcode as u8, 42, status, &[body]);
    out
}

/// Decodes a whole frame and then its request body.
fn decode_request(bytes: &[u8]) -> Result<Request<'_>, FrameError> {
    let frame = decode_frame(bytes)?.expect("frame is whole");
    assert_eq!(frame.wire_len(), bytes.len());
    Request::decode(&frame)
}

/// Decodes a whole response frame.
fn decode_response(bytes: &[u8]) -> Response<'_> {
    let frame = decode_frame(bytes).expect("frame decodes").expect("frame is whole");
    Response::from_frame(&frame).expect("is a response")
}

/// An error that must close the connection: answered with `status`, not skippable.
fn assert_fatal(error: FrameError, status: Status) {
    assert_eq!(error.status(), status, "{error}");
    assert_eq!(error.skippable_len(), None, "{error} must not be skippable");
}

/// One valid frame of every opcode, requests and responses, with and without
/// variable parts.
fn valid_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let envelope_user = EnvelopeUser { envelope: U64::new(0x0001_0000_0000_0001), user: U64::new(7) };
    let requests = [
        Request::hello(b""),
        Request::hello(b"secret-token"),
        Request::Ping,
        Request::Create(CreateRequest {
            sender: U64::new(1),
            total_cents: U64::new(500),
            count: U32::new(5),
            kind: 1,
            reserved0: [0; 3],
            expires_in_secs: U32::new(60),
            reserved1: U32::new(0),
        }),
        Request::Grab(envelope_user),
        Request::Open(envelope_user),
        Request::Query(QueryRequest {
            envelope: U64::new(9),
            page_start: U32::new(0),
            page_limit: U32::new(3),
        }),
        Request::Stats,
    ];
    for (id, request) in requests.iter().enumerate() {
        let mut out = Vec::new();
        request.encode(id as u64, &mut out);
        frames.push(out);
    }
    let mut hello = HelloResponse::new_zeroed();
    hello.version = 1;
    hello.shard_count = U16::new(2);
    let mut body = hello.as_bytes().to_vec();
    body.extend_from_slice(&[0xe9, 0x1c, 0xea, 0x1c]);
    frames.push(raw_response(Opcode::Hello, Status::Ok, &body));
    frames.push(raw_response(Opcode::Ping, Status::Ok, &[]));
    frames.push(raw_response(Opcode::Create, Status::Ok, CreateResponse::new_zeroed().as_bytes()));
    frames.push(raw_response(Opcode::Grab, Status::SoldOut, GrabResponse::new_zeroed().as_bytes()));
    frames.push(raw_response(Opcode::Open, Status::Ok, OpenResponse::new_zeroed().as_bytes()));
    let mut query = QueryResponse::new_zeroed();
    query.page_len = U32::new(1);
    let mut body = query.as_bytes().to_vec();
    body.extend_from_slice(ClaimEntry::new_zeroed().as_bytes());
    frames.push(raw_response(Opcode::Query, Status::Ok, &body));
    frames.push(raw_response(Opcode::Stats, Status::Ok, StatsResponse::new_zeroed().as_bytes()));
    frames.push(raw_response(Opcode::Grab, Status::MalformedFrame, &[]));
    frames
}

#[test]
fn every_truncation_of_a_valid_frame_asks_for_more() {
    for frame in valid_frames() {
        for len in 0..frame.len() {
            assert_eq!(decode_frame(&frame[..len]), Ok(None), "prefix of {len} of {frame:02x?}");
        }
        let whole = decode_frame(&frame).expect("valid").expect("whole");
        assert_eq!(whole.wire_len(), frame.len());
        // Bytes after the frame belong to the next one and are left alone.
        let mut longer = frame.clone();
        longer.extend_from_slice(b"HB\x01");
        assert_eq!(decode_frame(&longer).expect("valid").expect("whole").wire_len(), frame.len());
    }
}

#[test]
fn bad_magic_is_refused_as_soon_as_it_is_seen() {
    assert_eq!(decode_frame(b""), Ok(None));
    assert_eq!(decode_frame(b"H"), Ok(None));
    assert_eq!(decode_frame(b"HB"), Ok(None));
    assert_eq!(decode_frame(b"X"), Err(FrameError::BadMagic { found: [b'X', 0] }));
    assert_eq!(decode_frame(b"GET / HTTP/1.1\r\n"), Err(FrameError::BadMagic { found: *b"GE" }));
    assert_eq!(decode_frame(b"HX"), Err(FrameError::BadMagic { found: *b"HX" }));
    assert_eq!(decode_frame(b"hb"), Err(FrameError::BadMagic { found: *b"hb" }));
    for magic in [*b"BH", *b"hB", *b"Hb", [0, 0], [0xff, 0xff]] {
        let frame = raw_request(Opcode::Ping as u8, &[], |h| h.magic = magic);
        let error = decode_frame(&frame).unwrap_err();
        assert_eq!(error, FrameError::BadMagic { found: magic });
        assert_fatal(error, Status::MalformedFrame);
    }
}

#[test]
fn unsupported_version_is_refused_with_its_status() {
    for version in [0u8, 2, 0x7f, 0xff] {
        let frame = raw_request(Opcode::Ping as u8, &[], |h| h.version = version);
        let error = decode_frame(&frame).unwrap_err();
        assert_eq!(error, FrameError::UnsupportedVersion { version });
        assert_fatal(error, Status::UnsupportedVersion);
    }
}

#[test]
fn oversized_body_is_refused_when_the_header_is_in() {
    for len in [MAX_BODY_LEN + 1, MAX_BODY_LEN * 2, u32::MAX] {
        // Only the header: nothing of the body has arrived, and none is needed.
        let header = raw_request(Opcode::Create as u8, &[], |h| h.body_len = U32::new(len));
        assert_eq!(header.len(), HEADER_LEN);
        let error = decode_frame(&header).unwrap_err();
        assert_eq!(error, FrameError::BodyTooLarge { len, max: MAX_BODY_LEN });
        assert_fatal(error, Status::FrameTooLarge);
        // The same for a response and for an unknown opcode.
        let mut response = header.clone();
        response[4] = FLAG_RESPONSE;
        assert_eq!(decode_frame(&response), Err(FrameError::BodyTooLarge { len, max: MAX_BODY_LEN }));
        let mut unknown = header.clone();
        unknown[3] = 0x7f;
        assert_eq!(decode_frame(&unknown), Err(FrameError::BodyTooLarge { len, max: MAX_BODY_LEN }));
    }
    // The limit itself is allowed: the decoder waits for the body.
    let header = raw_request(Opcode::Create as u8, &[], |h| h.body_len = U32::new(MAX_BODY_LEN));
    assert_eq!(decode_frame(&header), Ok(None));
}

#[test]
fn unknown_opcode_is_skippable_by_its_length() {
    let unknown: Vec<u8> = (0..=255u8).filter(|b| Opcode::from_u8(*b).is_none()).collect();
    assert_eq!(unknown.len(), 256 - Opcode::ALL.len());
    for opcode in unknown {
        for body_len in [0usize, 1, 16, 1000] {
            let body = vec![0xa5; body_len];
            let frame = raw_request(opcode, &body, |_| {});
            // Not judged before the whole frame is in: its end must be known to skip it.
            for len in 0..frame.len() {
                assert_eq!(decode_frame(&frame[..len]), Ok(None));
            }
            let error = decode_frame(&frame).unwrap_err();
            assert_eq!(error, FrameError::UnknownOpcode { opcode, frame_len: HEADER_LEN + body_len });
            assert_eq!(error.status(), Status::UnknownOpcode);
            assert_eq!(error.skippable_len(), Some(frame.len()));
        }
    }
}

#[test]
fn the_frame_after_a_skipped_unknown_opcode_decodes() {
    let mut stream = raw_request(0x7f, b"whatever", |_| {});
    Request::Ping.encode(43, &mut stream);
    let skip = decode_frame(&stream).unwrap_err().skippable_len().expect("skippable");
    let next = decode_frame(&stream[skip..]).expect("valid").expect("whole");
    assert_eq!(Request::decode(&next), Ok(Request::Ping));
    assert_eq!(next.request_id(), 43);
}

#[test]
fn the_answer_to_an_unknown_opcode_reaches_the_client() {
    // A response echoes the unknown opcode byte; the client must still read it.
    for opcode in [0u8, 0x7f, 0xff] {
        let frame = {
            let mut out = Vec::new();
            write_response(&mut out, opcode, 42, Status::UnknownOpcode, &[]);
            out
        };
        let response = decode_response(&frame);
        assert_eq!(
            (response.opcode, response.request_id, response.status),
            (opcode, 42, Status::UnknownOpcode)
        );
    }
}

#[test]
fn nonzero_reserved_header_bytes_are_refused() {
    let base = raw_request(Opcode::Ping as u8, &[], |_| {});
    // Offset 5 and 12..16 in every frame; 6..8 (status) in a request.
    for offset in [5, 12, 13, 14, 15, 6, 7] {
        for value in [1u8, 0x80, 0xff] {
            let mut frame = base.clone();
            frame[offset] = value;
            let error = decode_frame(&frame).unwrap_err();
            assert_eq!(error, FrameError::ReservedNotZero { offset }, "offset {offset}");
            assert_fatal(error, Status::MalformedFrame);
        }
    }
    // In a response offsets 6..8 are the status; one outside the table is refused.
    for status in [Status::ALL.len() as u16, 0x0100, u16::MAX] {
        let mut frame = raw_response(Opcode::Ping, Status::Ok, &[]);
        frame[6..8].copy_from_slice(&status.to_le_bytes());
        let error = decode_frame(&frame).unwrap_err();
        assert_eq!(error, FrameError::UnknownStatus { status });
        assert_fatal(error, Status::MalformedFrame);
    }
    let mut frame = raw_response(Opcode::Ping, Status::Ok, &[]);
    frame[13] = 1;
    assert_eq!(decode_frame(&frame), Err(FrameError::ReservedNotZero { offset: 13 }));
}

#[test]
fn unknown_flags_are_refused() {
    for bit in 1..8 {
        let flags = 1u8 << bit;
        for base in [0, FLAG_RESPONSE] {
            let frame = raw_request(Opcode::Ping as u8, &[], |h| h.flags = base | flags);
            let error = decode_frame(&frame).unwrap_err();
            assert_eq!(error, FrameError::UnknownFlags { flags: base | flags });
            assert_fatal(error, Status::MalformedFrame);
        }
    }
}

/// Sets every byte of `body` in turn and checks that exactly the bytes in
/// `reserved` are refused, each with its own offset in the frame.
fn check_reserved_bytes<T: FixedBody>(reserved: &[usize], decode: impl Fn(&[u8]) -> Result<(), FrameError>) {
    let zero = T::new_zeroed();
    let body = zero.as_bytes();
    assert_eq!(body.len(), T::SIZE);
    decode(body).expect("all-zero body decodes");
    for offset in 0..T::SIZE {
        let mut edited = body.to_vec();
        edited[offset] = 0x5a;
        let result = decode(&edited);
        if reserved.contains(&offset) {
            let error = result.unwrap_err();
            assert_eq!(error, FrameError::ReservedNotZero { offset: HEADER_LEN + offset });
            assert_fatal(error, Status::MalformedFrame);
        } else {
            assert_eq!(result, Ok(()), "byte {offset} of {} is not reserved", std::any::type_name::<T>());
        }
    }
}

/// Decodes `body` as the body of a request frame with `opcode`.
fn request_body(opcode: Opcode, body: &[u8]) -> Result<(), FrameError> {
    decode_request(&raw_request(opcode as u8, body, |_| {})).map(|_| ())
}

/// Decodes `body` as the fixed body of a response frame with `opcode`.
fn response_body<T: FixedBody>(opcode: Opcode, body: &[u8]) -> Result<(), FrameError> {
    decode_response(&raw_response(opcode, Status::Ok, body)).fixed::<T>().map(|_| ())
}

#[test]
fn nonzero_reserved_body_bytes_are_refused_in_requests() {
    check_reserved_bytes::<CreateRequest>(&[21, 22, 23, 28, 29, 30, 31], |b| request_body(Opcode::Create, b));
    check_reserved_bytes::<HelloRequest>(&[2, 3], |b| {
        let mut body = b.to_vec();
        body[4..8].fill(0); // token_len: no token follows
        request_body(Opcode::Hello, &body)
    });
    check_reserved_bytes::<EnvelopeUser>(&[], |b| request_body(Opcode::Grab, b));
    check_reserved_bytes::<EnvelopeUser>(&[], |b| request_body(Opcode::Open, b));
    check_reserved_bytes::<QueryRequest>(&[], |b| request_body(Opcode::Query, b));
}

#[test]
fn nonzero_reserved_body_bytes_are_refused_in_responses() {
    check_reserved_bytes::<CreateResponse>(&[], |b| response_body::<CreateResponse>(Opcode::Create, b));
    check_reserved_bytes::<GrabResponse>(&[20, 21, 22, 23], |b| {
        response_body::<GrabResponse>(Opcode::Grab, b)
    });
    check_reserved_bytes::<OpenResponse>(&[12, 13, 14, 15], |b| {
        response_body::<OpenResponse>(Opcode::Open, b)
    });
    check_reserved_bytes::<StatsResponse>(&[4, 5, 6, 7, 150, 151], |b| {
        response_body::<StatsResponse>(Opcode::Stats, b)
    });
    // HELLO, QUERY and STATS have a variable tail; decode them through their accessors.
    check_reserved_bytes::<StatsResponse>(&[4, 5, 6, 7, 150, 151], |b| {
        let mut body = b.to_vec();
        body[144..150].fill(0); // the table lengths: no tables
        decode_response(&raw_response(Opcode::Stats, Status::Ok, &body)).stats().map(|_| ())
    });
    check_reserved_bytes::<HelloResponse>(&[1, 6, 7], |b| {
        let mut body = b.to_vec();
        body[2..4].copy_from_slice(&1u16.to_le_bytes()); // shard_count: one port follows
        body.extend_from_slice(&7401u16.to_le_bytes());
        decode_response(&raw_response(Opcode::Hello, Status::Ok, &body)).hello().map(|_| ()).or_else(|e| {
            match e {
                // shard_id and the limits have ranges: 0x5a in them may be
                // refused, but as out of range, not as a reserved byte.
                FrameError::FieldOutOfRange { .. } | FrameError::FieldTooLarge { .. } => Ok(()),
                e => Err(e),
            }
        })
    });
    check_reserved_bytes::<QueryResponse>(&[102, 103], |b| {
        let mut body = b.to_vec();
        body[96..100].fill(0); // page_len: no claims
        decode_response(&raw_response(Opcode::Query, Status::Ok, &body)).query().map(|_| ())
    });
}

#[test]
fn nonzero_reserved_bytes_in_a_claim_name_their_frame_offset() {
    let mut query = QueryResponse::new_zeroed();
    query.page_len = U32::new(3);
    for claim in 0..3 {
        for byte in 20..24 {
            let mut body = query.as_bytes().to_vec();
            let claims = [ClaimEntry::new_zeroed(); 3];
            for c in &claims {
                body.extend_from_slice(c.as_bytes());
            }
            let at = QueryResponse::SIZE + claim * ClaimEntry::SIZE + byte;
            body[at] = 1;
            let frame = raw_response(Opcode::Query, Status::Ok, &body);
            let response = decode_response(&frame);
            let (_, page) = response.query().expect("fixed part is fine");
            let results: Vec<_> = page.iter().collect();
            assert_eq!(results.len(), 3);
            for (i, result) in results.into_iter().enumerate() {
                if i == claim {
                    let error = result.unwrap_err();
                    assert_eq!(error, FrameError::ReservedNotZero { offset: HEADER_LEN + at });
                    assert_eq!(frame[HEADER_LEN + at], 1);
                } else {
                    assert!(result.is_ok());
                }
            }
        }
    }
}

#[test]
fn wrong_body_length_is_refused_for_every_fixed_request() {
    let fixed = [
        (Opcode::Ping, 0),
        (Opcode::Create, CreateRequest::SIZE),
        (Opcode::Grab, EnvelopeUser::SIZE),
        (Opcode::Open, EnvelopeUser::SIZE),
        (Opcode::Query, QueryRequest::SIZE),
        (Opcode::Stats, 0),
    ];
    for (opcode, expected) in fixed {
        assert!(request_body(opcode, &vec![0; expected]).is_ok(), "{opcode}");
        for len in (0..=expected + 40).filter(|len| *len != expected) {
            let error = request_body(opcode, &vec![0; len]).unwrap_err();
            assert_eq!(error, FrameError::BadBodyLength { opcode: opcode as u8, expected, len }, "{opcode}");
            assert_fatal(error, Status::MalformedFrame);
        }
    }
    // HELLO's fixed part is 8 bytes; less cannot even hold token_len.
    for len in 0..HelloRequest::SIZE {
        let error = request_body(Opcode::Hello, &vec![0; len]).unwrap_err();
        assert_eq!(error, FrameError::BadBodyLength { opcode: 1, expected: 8, len });
    }
}

#[test]
fn wrong_body_length_is_refused_for_every_fixed_response() {
    fn check<T: FixedBody + std::fmt::Debug>(opcode: Opcode) {
        for len in (0..=T::SIZE + 30).filter(|len| *len != T::SIZE) {
            let frame = raw_response(opcode, Status::Ok, &vec![0; len]);
            let error = decode_response(&frame).fixed::<T>().unwrap_err();
            assert_eq!(error, FrameError::BadBodyLength { opcode: opcode as u8, expected: T::SIZE, len });
        }
    }
    check::<CreateResponse>(Opcode::Create);
    check::<GrabResponse>(Opcode::Grab);
    check::<OpenResponse>(Opcode::Open);
    check::<StatsResponse>(Opcode::Stats);
}

#[test]
fn frames_in_the_wrong_direction_are_refused() {
    // A request flagged as a response, sent to a server.
    for request in [Request::Ping, Request::Stats, Request::hello(b"")] {
        let mut frame = Vec::new();
        request.encode(1, &mut frame);
        frame[4] |= FLAG_RESPONSE;
        let decoded = decode_frame(&frame).expect("header is fine").expect("whole");
        let error = Request::decode(&decoded).unwrap_err();
        assert_eq!(error, FrameError::WrongDirection { response: true });
        assert_fatal(error, Status::MalformedFrame);
    }
    // A response-flagged frame with an unknown opcode is still the wrong direction.
    let frame = raw_request(0x7f, &[], |h| h.flags = FLAG_RESPONSE);
    let decoded = decode_frame(&frame).expect("a response's opcode is not judged").expect("whole");
    assert_eq!(Request::decode(&decoded), Err(FrameError::WrongDirection { response: true }));
    // A request where a client expects a response.
    let mut frame = Vec::new();
    Request::Ping.encode(1, &mut frame);
    let decoded = decode_frame(&frame).expect("valid").expect("whole");
    assert_eq!(Response::from_frame(&decoded), Err(FrameError::WrongDirection { response: false }));
}

/// A HELLO request body with a `token_len` field and `token_bytes` bytes after it.
fn hello_body(token_len: u32, token_bytes: usize) -> Vec<u8> {
    let mut body = vec![1, 1, 0, 0];
    body.extend_from_slice(&token_len.to_le_bytes());
    body.resize(body.len() + token_bytes, b't');
    body
}

#[test]
fn hello_token_length_is_bounded_and_consistent() {
    let max = MAX_TOKEN_LEN as usize;
    // Up to the limit, consistent lengths decode.
    for len in [0, 1, max - 1, max] {
        let frame = raw_request(Opcode::Hello as u8, &hello_body(len as u32, len), |_| {});
        let Request::Hello { token, .. } = decode_request(&frame).expect("decodes") else { panic!() };
        assert_eq!(token.len(), len);
    }
    // Above the limit: refused whatever follows, before the length is trusted.
    for (token_len, bytes) in [(max + 1, max + 1), (max + 1, 0), (u32::MAX as usize, 4)] {
        let frame = raw_request(Opcode::Hello as u8, &hello_body(token_len as u32, bytes), |_| {});
        let error = decode_request(&frame).unwrap_err();
        let expected =
            FrameError::FieldTooLarge { field: "token_len", value: token_len as u32, max: MAX_TOKEN_LEN };
        assert_eq!(error, expected);
        assert_fatal(error, Status::MalformedFrame);
    }
    // Within the limit but not what the body holds.
    for (token_len, bytes) in [(0u32, 1), (1, 0), (5, 4), (5, 6), (MAX_TOKEN_LEN, max - 1), (3, max + 5)] {
        let frame = raw_request(Opcode::Hello as u8, &hello_body(token_len, bytes), |_| {});
        let error = decode_request(&frame).unwrap_err();
        let expected = FrameError::BadBodyLength {
            opcode: Opcode::Hello as u8,
            expected: HelloRequest::SIZE + token_len as usize,
            len: HelloRequest::SIZE + bytes,
        };
        assert_eq!(error, expected);
        assert_fatal(error, Status::MalformedFrame);
    }
}

/// A QUERY response body claiming `page_len` claims and holding `claims` of them.
fn query_body(page_len: u32, claims: usize) -> Vec<u8> {
    let mut query = QueryResponse::new_zeroed();
    query.page_len = U32::new(page_len);
    let mut body = query.as_bytes().to_vec();
    body.resize(body.len() + claims * ClaimEntry::SIZE, 0);
    body
}

#[test]
fn query_page_length_is_bounded_and_consistent() {
    for n in [0u32, 1, 2, MAX_QUERY_PAGE] {
        let frame = raw_response(Opcode::Query, Status::Ok, &query_body(n, n as usize));
        let (query, claims) = decode_response(&frame).query().expect("consistent page decodes");
        assert_eq!(query.page_len.get(), n);
        assert_eq!(claims.iter().count(), n as usize);
    }
    for (page_len, claims) in [(0, 1), (1, 0), (2, 1), (2, 3), (MAX_QUERY_PAGE, 0)] {
        let body = query_body(page_len, claims);
        let len = body.len();
        let frame = raw_response(Opcode::Query, Status::Ok, &body);
        let error = decode_response(&frame).query().unwrap_err();
        let expected = FrameError::BadBodyLength {
            opcode: Opcode::Query as u8,
            expected: QueryResponse::SIZE + page_len as usize * ClaimEntry::SIZE,
            len,
        };
        assert_eq!(error, expected);
    }
    // A body that is not a whole number of claims.
    let mut body = query_body(1, 1);
    body.push(0);
    let frame = raw_response(Opcode::Query, Status::Ok, &body);
    assert!(matches!(decode_response(&frame).query(), Err(FrameError::BadBodyLength { .. })));
    // Above the limit: refused before the length is trusted.
    for page_len in [MAX_QUERY_PAGE + 1, u32::MAX] {
        let frame = raw_response(Opcode::Query, Status::Ok, &query_body(page_len, 0));
        let error = decode_response(&frame).query().unwrap_err();
        assert_eq!(
            error,
            FrameError::FieldTooLarge { field: "page_len", value: page_len, max: MAX_QUERY_PAGE }
        );
    }
    // Shorter than the fixed part.
    let frame = raw_response(Opcode::Query, Status::Ok, &[0; 50]);
    let error = decode_response(&frame).query().unwrap_err();
    assert_eq!(error, FrameError::BadBodyLength { opcode: Opcode::Query as u8, expected: 104, len: 50 });
}

#[test]
fn hello_shard_count_is_bounded_and_consistent() {
    let body = |count: u16, ports: usize| {
        let mut hello = HelloResponse::new_zeroed();
        hello.shard_count = U16::new(count);
        let mut body = hello.as_bytes().to_vec();
        body.resize(body.len() + ports * 2, 0);
        body
    };
    for count in [1u16, 2, MAX_SHARDS] {
        let frame = raw_response(Opcode::Hello, Status::Ok, &body(count, usize::from(count)));
        let (_, ports) = decode_response(&frame).hello().expect("consistent");
        assert_eq!(ports.iter().count(), usize::from(count));
    }
    for count in [0u16, MAX_SHARDS + 1, u16::MAX] {
        let frame = raw_response(Opcode::Hello, Status::Ok, &body(count, 0));
        let error = decode_response(&frame).hello().unwrap_err();
        assert!(matches!(error, FrameError::FieldOutOfRange { field: "shard_count", .. }), "{error:?}");
    }
    assert_eq!(
        FrameError::FieldOutOfRange { field: "shard_count", value: 0, min: 1, max: 1024 }.to_string(),
        "shard_count of 0 outside 1 to 1024"
    );
    // The answering shard is one of them; the limits are the protocol's at most.
    let with = |edit: fn(&mut HelloResponse)| {
        let mut hello = HelloResponse::new_zeroed();
        hello.shard_count = U16::new(2);
        edit(&mut hello);
        let mut body = hello.as_bytes().to_vec();
        body.resize(body.len() + 4, 0);
        decode_response(&raw_response(Opcode::Hello, Status::Ok, &body)).hello().map(|_| ())
    };
    assert_eq!(with(|h| h.shard_id = U16::new(1)), Ok(()));
    assert!(matches!(
        with(|h| h.shard_id = U16::new(2)),
        Err(FrameError::FieldOutOfRange { field: "shard_id", .. })
    ));
    assert_eq!(with(|h| h.max_body_len = U32::new(MAX_BODY_LEN)), Ok(()));
    assert!(matches!(
        with(|h| h.max_body_len = U32::new(MAX_BODY_LEN + 1)),
        Err(FrameError::FieldTooLarge { field: "max_body_len", .. })
    ));
    assert!(matches!(
        with(|h| h.max_query_page = U32::new(MAX_QUERY_PAGE + 1)),
        Err(FrameError::FieldTooLarge { field: "max_query_page", .. })
    ));
    for (count, ports) in [(1u16, 0usize), (1, 2), (2, 1)] {
        let frame = raw_response(Opcode::Hello, Status::Ok, &body(count, ports));
        let error = decode_response(&frame).hello().unwrap_err();
        assert!(matches!(error, FrameError::BadBodyLength { .. }), "{error:?}");
    }
}

#[test]
fn a_frame_written_by_write_frame_with_a_bad_header_is_refused() {
    // The encoder does not judge the header it is given; the decoder must.
    let mut header = Header::request(Opcode::Grab, 1, 0);
    header.reserved1 = U32::new(1 << 24);
    let mut frame = Vec::new();
    write_frame(&mut frame, header, &[EnvelopeUser::new_zeroed().as_bytes()]);
    assert_eq!(decode_frame(&frame), Err(FrameError::ReservedNotZero { offset: 15 }));
}
