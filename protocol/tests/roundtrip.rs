//! Property tests of the codec: what is encoded decodes to the same value
//! (STATS's tables included), arbitrary bytes never make the decoder panic or
//! over-read, and a stream of frames cut at arbitrary places decodes to the
//! frames that were sent.

use hongbao_protocol::body::{
    ClaimEntry, CreateRequest, EnvelopeUser, FixedBody, GrabResponse, HelloRequest, HistogramHeader,
    HistogramKind, OpenResponse, QueryRequest, QueryResponse, RequestCount, StatsResponse, OPCODE_OTHER,
};
use hongbao_protocol::codec::{write_response, ResponseBuilder};
use hongbao_protocol::limits::{MAX_BODY_LEN, MAX_QUERY_PAGE, MAX_STATS_BUCKET_BOUNDS, MAX_TOKEN_LEN};
use hongbao_protocol::response::Response;
use hongbao_protocol::{decode_frame, Opcode, Request, Status, HEADER_LEN};
use proptest::prelude::*;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// An owned request, so a strategy can produce it and a decoded (borrowing)
/// request can be compared with it after its buffer is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owned {
    Hello { version_min: u8, version_max: u8, token: Vec<u8> },
    Ping,
    Create(CreateRequest),
    Grab(EnvelopeUser),
    Open(EnvelopeUser),
    Query(QueryRequest),
    Stats,
}

impl Owned {
    fn request(&self) -> Request<'_> {
        match self {
            Owned::Hello { version_min, version_max, token } => {
                let mut hello = HelloRequest::new_zeroed();
                hello.version_min = *version_min;
                hello.version_max = *version_max;
                hello.token_len = U32::new(token.len() as u32);
                Request::Hello { hello, token }
            }
            Owned::Ping => Request::Ping,
            Owned::Create(body) => Request::Create(*body),
            Owned::Grab(body) => Request::Grab(*body),
            Owned::Open(body) => Request::Open(*body),
            Owned::Query(body) => Request::Query(*body),
            Owned::Stats => Request::Stats,
        }
    }

    fn from_request(request: &Request<'_>) -> Owned {
        match request {
            Request::Hello { hello, token } => Owned::Hello {
                version_min: hello.version_min,
                version_max: hello.version_max,
                token: token.to_vec(),
            },
            Request::Ping => Owned::Ping,
            Request::Create(body) => Owned::Create(*body),
            Request::Grab(body) => Owned::Grab(*body),
            Request::Open(body) => Owned::Open(*body),
            Request::Query(body) => Owned::Query(*body),
            Request::Stats => Owned::Stats,
        }
    }
}

fn envelope_user() -> impl Strategy<Value = EnvelopeUser> {
    (any::<u64>(), any::<u64>())
        .prop_map(|(envelope, user)| EnvelopeUser { envelope: U64::new(envelope), user: U64::new(user) })
}

/// Every request with arbitrary field values; reserved fields are zero, as
/// every encoder writes them, and the token is within its limit.
fn owned_request() -> impl Strategy<Value = Owned> {
    let hello = (any::<u8>(), any::<u8>(), prop::collection::vec(any::<u8>(), 0..=MAX_TOKEN_LEN as usize))
        .prop_map(|(version_min, version_max, token)| Owned::Hello { version_min, version_max, token });
    let create = (any::<u64>(), any::<u64>(), any::<u32>(), any::<u8>(), any::<u32>()).prop_map(
        |(sender, total, count, kind, expires)| {
            Owned::Create(CreateRequest {
                sender: U64::new(sender),
                total_cents: U64::new(total),
                count: U32::new(count),
                kind,
                reserved0: [0; 3],
                expires_in_secs: U32::new(expires),
                reserved1: U32::new(0),
            })
        },
    );
    let query = (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(envelope, start, limit)| {
        Owned::Query(QueryRequest {
            envelope: U64::new(envelope),
            page_start: U32::new(start),
            page_limit: U32::new(limit),
        })
    });
    prop_oneof![
        hello,
        Just(Owned::Ping),
        create,
        envelope_user().prop_map(Owned::Grab),
        envelope_user().prop_map(Owned::Open),
        query,
        Just(Owned::Stats),
    ]
}

/// An opcode a STATS table may name: one of the table, or "other".
fn counted_opcode() -> impl Strategy<Value = u8> {
    let mut opcodes: Vec<u8> = Opcode::ALL.iter().map(|op| *op as u8).collect();
    opcodes.push(OPCODE_OTHER);
    prop::sample::select(opcodes)
}

/// The (kind, opcode) of a valid histogram.
fn histogram_key() -> impl Strategy<Value = (u8, u8)> {
    prop_oneof![
        counted_opcode().prop_map(|op| (HistogramKind::Request as u8, op)),
        Just((HistogramKind::LogSync as u8, 0)),
    ]
}

/// Byte strings that get past the magic (and often the version) often enough
/// to exercise everything after it.
fn frame_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let random = prop::collection::vec(any::<u8>(), 0..300);
    let headed = (prop::collection::vec(any::<u8>(), 0..300), any::<bool>(), 0u32..200, any::<u8>())
        .prop_map(|(mut bytes, small_len, body_len, opcode)| {
            let prefix = [b'H', b'B', 1, opcode];
            for (i, b) in prefix.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(i) {
                    *slot = *b;
                }
            }
            if small_len && bytes.len() >= 12 {
                bytes[8..12].copy_from_slice(&body_len.to_le_bytes());
            }
            bytes
        });
    prop_oneof![random, headed]
}

/// Runs every decoder the crate has on `bytes`; none may panic or over-read.
fn decode_everything(bytes: &[u8]) {
    match decode_frame(bytes) {
        Ok(Some(frame)) => {
            assert!(frame.wire_len() <= bytes.len());
            assert_eq!(frame.body.len(), frame.header.body_len.get() as usize);
            assert!(frame.body.len() <= MAX_BODY_LEN as usize);
            let _ = Request::decode(&frame);
            if let Ok(response) = Response::from_frame(&frame) {
                let _ = response.fixed::<GrabResponse>();
                let _ = response.fixed::<OpenResponse>();
                let _ = response.fixed::<StatsResponse>();
                if let Ok((_, ports)) = response.hello() {
                    let _ = ports.iter().count();
                }
                if let Ok((query, claims)) = response.query() {
                    assert_eq!(claims.iter().count(), query.page_len.get() as usize);
                }
                if let Ok((stats, tables)) = response.stats() {
                    assert_eq!(tables.request_counts().count(), usize::from(stats.request_counts_len.get()));
                    assert_eq!(tables.bucket_bounds_us().count(), usize::from(stats.bucket_bounds_len.get()));
                    let buckets = usize::from(stats.bucket_bounds_len.get()) + 1;
                    assert!(tables.histograms().all(|h| h.buckets().count() == buckets));
                    assert_eq!(tables.histograms().count(), usize::from(stats.histograms_len.get()));
                }
            }
        }
        Ok(None) => {}
        Err(error) => {
            let _ = error.status();
            if let Some(len) = error.skippable_len() {
                assert!(len >= HEADER_LEN && len <= bytes.len(), "skip {len} of {}", bytes.len());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn every_request_round_trips(owned in owned_request(), request_id in any::<u64>()) {
        let request = owned.request();
        let mut bytes = Vec::new();
        request.encode(request_id, &mut bytes);

        let frame = decode_frame(&bytes).expect("encoded request decodes").expect("whole");
        prop_assert_eq!(frame.wire_len(), bytes.len());
        prop_assert_eq!(frame.request_id(), request_id);
        prop_assert_eq!(frame.header.opcode(), Some(request.opcode()));
        prop_assert!(!frame.header.is_response());
        let decoded = Request::decode(&frame).expect("encoded body decodes");
        prop_assert_eq!(decoded, request);
        prop_assert_eq!(Owned::from_request(&decoded), owned);
    }

    #[test]
    fn fixed_responses_round_trip(
        words in prop::collection::vec(any::<u8>(), StatsResponse::SIZE),
        status in 0..Status::ALL.len(),
        request_id in any::<u64>(),
    ) {
        let status = Status::ALL[status];
        // Arbitrary field values, then reserved bytes zeroed as an encoder writes them.
        let mut grab = GrabResponse::read_from_prefix(&words).expect("long enough").0;
        grab.reserved = U32::new(0);
        let mut open = OpenResponse::read_from_prefix(&words).expect("long enough").0;
        open.reserved = U32::new(0);
        let mut stats = StatsResponse::read_from_prefix(&words).expect("long enough").0;
        stats.reserved = U32::new(0);
        stats.reserved1 = U16::new(0);

        let mut bytes = Vec::new();
        write_response(&mut bytes, Opcode::Grab as u8, request_id, status, &[grab.as_bytes()]);
        write_response(&mut bytes, Opcode::Open as u8, request_id, status, &[open.as_bytes()]);
        write_response(&mut bytes, Opcode::Stats as u8, request_id, status, &[stats.as_bytes()]);

        let mut at = 0;
        for opcode in [Opcode::Grab, Opcode::Open, Opcode::Stats] {
            let frame = decode_frame(&bytes[at..]).expect("decodes").expect("whole");
            at += frame.wire_len();
            let response = Response::from_frame(&frame).expect("a response");
            prop_assert_eq!((response.opcode, response.request_id, response.status),
                            (opcode as u8, request_id, status));
            match opcode {
                Opcode::Grab => prop_assert_eq!(response.fixed::<GrabResponse>(), Ok(grab)),
                Opcode::Open => prop_assert_eq!(response.fixed::<OpenResponse>(), Ok(open)),
                _ => prop_assert_eq!(response.fixed::<StatsResponse>(), Ok(stats)),
            }
        }
        prop_assert_eq!(at, bytes.len());
    }

    #[test]
    fn query_pages_round_trip(
        fixed in prop::collection::vec(any::<u8>(), QueryResponse::SIZE),
        claims in prop::collection::vec((any::<u64>(), any::<u64>(), any::<u32>()), 0..=64),
    ) {
        let mut query = QueryResponse::read_from_bytes(&fixed).expect("right size");
        query.reserved = [0; 2];
        query.page_len = U32::new(claims.len() as u32);
        let claims: Vec<ClaimEntry> = claims
            .iter()
            .map(|(user, amount, order)| ClaimEntry {
                user: U64::new(*user),
                amount_cents: U64::new(*amount),
                order: U32::new(*order),
                reserved: U32::new(0),
            })
            .collect();
        let mut bytes = Vec::new();
        let builder = ResponseBuilder::begin(&mut bytes, Opcode::Query as u8, 6, Status::Ok);
        bytes.extend_from_slice(query.as_bytes());
        for claim in &claims {
            bytes.extend_from_slice(claim.as_bytes());
        }
        builder.finish(&mut bytes);

        let frame = decode_frame(&bytes).expect("decodes").expect("whole");
        prop_assert_eq!(frame.wire_len(), bytes.len());
        let response = Response::from_frame(&frame).expect("a response");
        let (decoded, page) = response.query().expect("page decodes");
        prop_assert_eq!(decoded, query);
        let page: Vec<ClaimEntry> = page.iter().map(|c| c.expect("claim decodes")).collect();
        prop_assert_eq!(page, claims);
        prop_assert!(query.page_len.get() <= MAX_QUERY_PAGE);
    }

    #[test]
    fn stats_answers_round_trip(
        fixed in prop::collection::vec(any::<u8>(), StatsResponse::SIZE),
        counts in prop::collection::btree_map((counted_opcode(), 0..Status::ALL.len() as u16), 1..=u64::MAX, 0..40),
        bounds in prop::collection::btree_set(any::<u64>(), 0..=MAX_STATS_BUCKET_BOUNDS as usize),
        histograms in prop::collection::btree_map(
            histogram_key(),
            (any::<u64>(), prop::collection::vec(any::<u64>(), MAX_STATS_BUCKET_BOUNDS as usize + 1)),
            0..10,
        ),
    ) {
        let mut stats = StatsResponse::read_from_bytes(&fixed).expect("right size");
        stats.reserved = U32::new(0);
        stats.reserved1 = U16::new(0);
        stats.request_counts_len = U16::new(counts.len() as u16);
        stats.bucket_bounds_len = U16::new(bounds.len() as u16);
        stats.histograms_len = U16::new(histograms.len() as u16);
        let mut bytes = Vec::new();
        let builder = ResponseBuilder::begin(&mut bytes, Opcode::Stats as u8, 7, Status::Ok);
        bytes.extend_from_slice(stats.as_bytes());
        for ((opcode, status), count) in &counts {
            let entry = RequestCount { opcode: *opcode, status: U16::new(*status), count: U64::new(*count), ..Default::default() };
            bytes.extend_from_slice(entry.as_bytes());
        }
        for bound in &bounds {
            bytes.extend_from_slice(&bound.to_le_bytes());
        }
        for ((kind, opcode), (sum_us, buckets)) in &histograms {
            let header = HistogramHeader { kind: *kind, opcode: *opcode, sum_us: U64::new(*sum_us), ..Default::default() };
            bytes.extend_from_slice(header.as_bytes());
            for bucket in &buckets[..=bounds.len()] {
                bytes.extend_from_slice(&bucket.to_le_bytes());
            }
        }
        builder.finish(&mut bytes);

        let frame = decode_frame(&bytes).expect("decodes").expect("whole");
        let response = Response::from_frame(&frame).expect("a response");
        let (decoded, tables) = response.stats().expect("tables decode");
        prop_assert_eq!(decoded, stats);
        let found: Vec<((u8, u16), u64)> =
            tables.request_counts().map(|c| ((c.opcode, c.status.get()), c.count.get())).collect();
        prop_assert_eq!(found, counts.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(tables.bucket_bounds_us().collect::<Vec<_>>(), bounds.iter().copied().collect::<Vec<_>>());
        let found: Vec<((u8, u8), u64, Vec<u64>)> = tables
            .histograms()
            .map(|h| ((h.header.kind, h.header.opcode), h.header.sum_us.get(), h.buckets().collect()))
            .collect();
        let expected: Vec<((u8, u8), u64, Vec<u64>)> =
            histograms.into_iter().map(|(key, (sum, buckets))| (key, sum, buckets[..=bounds.len()].to_vec())).collect();
        prop_assert_eq!(found, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in frame_like_bytes()) {
        decode_everything(&bytes);
        // Every prefix too: a decoder sees them all as a frame trickles in.
        for len in 0..bytes.len() {
            decode_everything(&bytes[..len]);
        }
    }

    #[test]
    fn a_stream_cut_anywhere_decodes_to_the_frames_sent(
        requests in prop::collection::vec((owned_request(), any::<u64>()), 1..40),
        chunks in prop::collection::vec(1usize..200, 1..64),
    ) {
        let mut stream = Vec::new();
        for (owned, request_id) in &requests {
            owned.request().encode(*request_id, &mut stream);
        }

        // Feed the stream in chunks of the given sizes (cycled), decoding every
        // whole frame as soon as it is in, as a connection's read loop does.
        let mut received = Vec::new();
        let mut buffer: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut sizes = chunks.iter().cycle();
        while fed < stream.len() {
            let size = (*sizes.next().expect("cycle")).min(stream.len() - fed);
            buffer.extend_from_slice(&stream[fed..fed + size]);
            fed += size;
            while let Some(frame) = decode_frame(&buffer).expect("a valid stream never errs") {
                let len = frame.wire_len();
                prop_assert!(len <= buffer.len());
                let request = Request::decode(&frame).expect("body decodes");
                received.push((Owned::from_request(&request), frame.request_id()));
                buffer.drain(..len);
            }
        }
        prop_assert!(buffer.is_empty(), "{} bytes left over", buffer.len());
        prop_assert_eq!(received, requests);
    }
}
