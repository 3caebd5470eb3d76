//! Golden tests: every ```` ```hex frame=NAME ```` block of `docs/PROTOCOL.md` is
//! decoded with the real codec, checked against the field values the document
//! describes, re-encoded with the codec's encoders and compared byte for byte.
//!
//! The document and the codec therefore cannot drift apart: a changed layout
//! breaks the re-encoding, a changed example breaks the field checks, and an
//! example without checks (or checks without an example) fails the test.

use hongbao_protocol::body::{
    ClaimEntry, CreateRequest, CreateResponse, EnvelopeKind, EnvelopeState, EnvelopeUser, FixedBody,
    GrabResponse, HistogramKind, OpenResponse, QueryRequest, QueryResponse, RequestCount, StatsResponse,
    StatsTables,
};
use hongbao_protocol::codec::{write_response, ResponseBuilder};
use hongbao_protocol::hot_path::{read_envelope_user_request, write_grab_response, write_open_response};
use hongbao_protocol::response::Response;
use hongbao_protocol::{decode_frame, EnvelopeId, Frame, Opcode, Request, Status, HEADER_LEN, VERSION};
use zerocopy::IntoBytes;

const DOC: &str = include_str!("../../docs/PROTOCOL.md");

/// The envelope every example is about: the first envelope of shard 1.
const ENVELOPE: u64 = 0x0001_0000_0000_0001;
/// 2026-01-01T00:00:00Z, when the example envelope was created.
const CREATED_AT_MS: u64 = 1_767_225_600_000;
/// One hour later, when it expires.
const EXPIRES_AT_MS: u64 = CREATED_AT_MS + 3_600_000;

/// Every example the document must carry, and for which this file has checks.
const EXPECTED: [&str; 18] = [
    "hello-request",
    "hello-response",
    "ping-request",
    "ping-response",
    "create-request",
    "create-response",
    "grab-request",
    "grab-response",
    "grab-sold-out-response",
    "grab-already-grabbed-response",
    "open-request",
    "open-response",
    "query-request",
    "query-response",
    "stats-request",
    "stats-response",
    "malformed-frame-response",
    "unknown-opcode-response",
];

/// One hex example: its name and its bytes.
#[derive(Debug)]
struct Example {
    name: String,
    bytes: Vec<u8>,
}

/// Extracts every ```` ```hex frame=NAME ```` block of the document.
fn examples(doc: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut lines = doc.lines().enumerate();
    while let Some((_, line)) = lines.next() {
        let Some(info) = line.trim().strip_prefix("```hex") else { continue };
        let name = info
            .split_whitespace()
            .find_map(|word| word.strip_prefix("frame="))
            .unwrap_or_else(|| panic!("hex block without frame=NAME: {line:?}"));
        let mut bytes = Vec::new();
        for (number, line) in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            parse_dump_line(line, &mut bytes)
                .unwrap_or_else(|e| panic!("line {}: {e}: {line:?}", number + 1));
        }
        out.push(Example { name: name.to_string(), bytes });
    }
    out
}

/// Appends the bytes of one `xxd`-style line: `OFFSET: hhhh hhhh ...  ascii`.
/// The offset must be the number of bytes read so far and every full line
/// must hold 16 bytes.
fn parse_dump_line(line: &str, bytes: &mut Vec<u8>) -> Result<(), String> {
    let (offset, rest) = line.split_once(": ").ok_or("no offset")?;
    let offset = usize::from_str_radix(offset.trim(), 16).map_err(|e| format!("offset: {e}"))?;
    if offset != bytes.len() || offset % 16 != 0 {
        return Err(format!("offset {offset:#x}, expected {:#x}", bytes.len()));
    }
    if !bytes.len().is_multiple_of(16) {
        return Err("a line after a short line".into());
    }
    // The hex groups are separated by one space, the ASCII column by two.
    let hex = rest.split("  ").next().unwrap_or("");
    for group in hex.split(' ') {
        if group.is_empty() || group.len() % 2 != 0 || group.len() > 4 {
            return Err(format!("bad group {group:?}"));
        }
        for pair in group.as_bytes().chunks(2) {
            let pair = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            bytes.push(u8::from_str_radix(pair, 16).map_err(|e| format!("{pair:?}: {e}"))?);
        }
    }
    if bytes.len() - offset > 16 {
        return Err("more than 16 bytes on a line".into());
    }
    Ok(())
}

/// Decodes an example that must be exactly one whole frame.
fn whole_frame(bytes: &[u8]) -> Frame<'_> {
    let frame = decode_frame(bytes).expect("example decodes").expect("example is a whole frame");
    assert_eq!(frame.wire_len(), bytes.len(), "example holds exactly one frame");
    assert_eq!(frame.header.version, VERSION);
    frame
}

/// Decodes a request example and checks that encoding it again gives its bytes.
fn request(bytes: &[u8]) -> (u64, Request<'_>) {
    let frame = whole_frame(bytes);
    let request = Request::decode(&frame).expect("request decodes");
    assert_eq!(frame.header.opcode().expect("known opcode"), request.opcode());
    let mut again = Vec::new();
    request.encode(frame.request_id(), &mut again);
    assert_eq!(again, bytes, "re-encoded request differs");
    (frame.request_id(), request)
}

/// Decodes a response example.
fn response(bytes: &[u8]) -> Response<'_> {
    let frame = whole_frame(bytes);
    assert!(Request::decode(&frame).is_err(), "a response is not a request");
    Response::from_frame(&frame).expect("response decodes")
}

/// Decodes a response with a fixed body and checks that writing that body
/// again gives the example's bytes.
fn fixed_response<T: FixedBody>(bytes: &[u8]) -> (Response<'_>, T) {
    let response = response(bytes);
    let body: T = response.fixed().expect("fixed body decodes");
    let mut again = Vec::new();
    write_response(&mut again, response.opcode, response.request_id, response.status, &[body.as_bytes()]);
    assert_eq!(again, bytes, "re-encoded response differs");
    (response, body)
}

/// Decodes a response with an empty body and checks its re-encoding.
fn empty_response(bytes: &[u8]) -> Response<'_> {
    let response = response(bytes);
    assert!(response.body.is_empty());
    let mut again = Vec::new();
    write_response(&mut again, response.opcode, response.request_id, response.status, &[]);
    assert_eq!(again, bytes, "re-encoded response differs");
    response
}

fn check_hello_request(bytes: &[u8]) {
    let (id, request) = request(bytes);
    assert_eq!(id, 1);
    let Request::Hello { hello, token } = request else { panic!("not HELLO: {request:?}") };
    assert_eq!((hello.version_min, hello.version_max), (1, 1));
    assert_eq!(hello.token_len.get(), 0);
    assert!(token.is_empty());
    assert_eq!(request, Request::hello(b""));
}

fn check_hello_response(bytes: &[u8]) {
    let response = response(bytes);
    assert_eq!((response.opcode, response.request_id, response.status), (Opcode::Hello as u8, 1, Status::Ok));
    let (hello, ports) = response.hello().expect("HELLO body decodes");
    assert_eq!(hello.version, 1);
    assert_eq!(hello.shard_count.get(), 2);
    assert_eq!(hello.shard_id.get(), 1);
    assert_eq!(hello.max_body_len.get(), 65_536);
    assert_eq!(hello.max_query_page.get(), 1024);
    let ports: Vec<u16> = ports.iter().collect();
    assert_eq!(ports, [7401, 7402]);

    let port_bytes: Vec<u8> = ports.iter().flat_map(|p| p.to_le_bytes()).collect();
    let mut again = Vec::new();
    write_response(&mut again, response.opcode, 1, Status::Ok, &[hello.as_bytes(), &port_bytes]);
    assert_eq!(again, bytes);
}

fn check_ping_request(bytes: &[u8]) {
    assert_eq!(request(bytes), (2, Request::Ping));
}

fn check_ping_response(bytes: &[u8]) {
    let response = empty_response(bytes);
    assert_eq!((response.opcode, response.request_id, response.status), (Opcode::Ping as u8, 2, Status::Ok));
}

fn check_create_request(bytes: &[u8]) {
    let (id, request) = request(bytes);
    assert_eq!(id, 3);
    let Request::Create(CreateRequest { sender, total_cents, count, kind, expires_in_secs, .. }) = request
    else {
        panic!("not CREATE: {request:?}")
    };
    assert_eq!(sender.get(), 10_001);
    assert_eq!(total_cents.get(), 10_000);
    assert_eq!(count.get(), 5);
    assert_eq!(EnvelopeKind::from_u8(kind), Some(EnvelopeKind::Random));
    assert_eq!(expires_in_secs.get(), 3600);
}

fn check_create_response(bytes: &[u8]) {
    let (response, body) = fixed_response::<CreateResponse>(bytes);
    assert_eq!(
        (response.opcode, response.request_id, response.status),
        (Opcode::Create as u8, 3, Status::Ok)
    );
    let envelope = EnvelopeId(body.envelope.get());
    assert_eq!(envelope.0, ENVELOPE);
    assert_eq!((envelope.shard(), envelope.seq()), (1, 1));
    assert_eq!(body.expires_at_ms.get(), EXPIRES_AT_MS);
}

fn check_envelope_user(bytes: &[u8], opcode: Opcode, request_id: u64) {
    let (id, request) = request(bytes);
    assert_eq!(id, request_id);
    let body = match (opcode, request) {
        (Opcode::Grab, Request::Grab(body)) | (Opcode::Open, Request::Open(body)) => body,
        _ => panic!("not {opcode}: {request:?}"),
    };
    let EnvelopeUser { envelope, user } = body;
    assert_eq!(envelope.get(), ENVELOPE);
    assert_eq!(user.get(), 20_002);
    // The server's one-pass reader agrees.
    let hot = read_envelope_user_request(bytes).expect("the hot path reads the example");
    assert_eq!((hot.op.opcode(), hot.request_id, hot.body), (opcode, request_id, body));
}

fn check_grab_response(bytes: &[u8], request_id: u64, status: Status, expected: [u64; 3]) {
    let (response, body) = fixed_response::<GrabResponse>(bytes);
    assert_eq!(
        (response.opcode, response.request_id, response.status),
        (Opcode::Grab as u8, request_id, status)
    );
    let found = [body.hold_until_ms.get(), body.amount_cents.get(), u64::from(body.shares_free.get())];
    assert_eq!(found, expected, "hold_until_ms, amount_cents, shares_free");
    let mut again = Vec::new();
    write_grab_response(&mut again, request_id, status, &body);
    assert_eq!(again, bytes, "the hot path's GRAB response differs");
}

fn check_open_response(bytes: &[u8]) {
    let (response, body) = fixed_response::<OpenResponse>(bytes);
    assert_eq!((response.opcode, response.request_id, response.status), (Opcode::Open as u8, 5, Status::Ok));
    assert_eq!(body.amount_cents.get(), 2731);
    assert_eq!(body.order.get(), 1);
    let mut again = Vec::new();
    write_open_response(&mut again, 5, Status::Ok, &body);
    assert_eq!(again, bytes, "the hot path's OPEN response differs");
}

fn check_query_request(bytes: &[u8]) {
    let (id, request) = request(bytes);
    assert_eq!(id, 6);
    let Request::Query(QueryRequest { envelope, page_start, page_limit }) = request else {
        panic!("not QUERY: {request:?}")
    };
    assert_eq!(envelope.get(), ENVELOPE);
    assert_eq!((page_start.get(), page_limit.get()), (0, 10));
}

fn check_query_response(bytes: &[u8]) {
    let response = response(bytes);
    assert_eq!((response.opcode, response.request_id, response.status), (Opcode::Query as u8, 6, Status::Ok));
    let (query, claims) = response.query().expect("QUERY body decodes");
    let claims: Vec<ClaimEntry> = claims.iter().map(|c| c.expect("claim decodes")).collect();

    assert_eq!(query.envelope.get(), ENVELOPE);
    assert_eq!(query.sender.get(), 10_001);
    assert_eq!(query.total_cents.get(), 10_000);
    assert_eq!(query.paid_cents.get(), 4275);
    assert_eq!(query.remaining_cents.get(), 5725);
    assert_eq!(query.refunded_cents.get(), 0);
    let money = query.paid_cents.get() + query.refunded_cents.get() + query.remaining_cents.get();
    assert_eq!(money, query.total_cents.get(), "paid + refunded + remaining == total");
    assert_eq!(query.created_at_ms.get(), CREATED_AT_MS);
    assert_eq!(query.expires_at_ms.get(), EXPIRES_AT_MS);
    assert_eq!((query.best_user.get(), query.best_amount_cents.get()), (20_002, 2731));
    assert_eq!((query.count.get(), query.paid_count.get(), query.reserved_count.get()), (5, 2, 1));
    assert_eq!((query.page_start.get(), query.page_len.get()), (0, 2));
    assert_eq!(EnvelopeState::from_u8(query.state), Some(EnvelopeState::Active));
    assert_eq!(EnvelopeKind::from_u8(query.kind), Some(EnvelopeKind::Random));

    let found: Vec<(u64, u64, u32)> =
        claims.iter().map(|c| (c.user.get(), c.amount_cents.get(), c.order.get())).collect();
    assert_eq!(found, [(20_002, 2731, 1), (20_003, 1544, 2)]);
    let paid: u64 = claims.iter().map(|c| c.amount_cents.get()).sum();
    assert_eq!(paid, query.paid_cents.get());

    let mut again = Vec::new();
    let builder = ResponseBuilder::begin(&mut again, response.opcode, response.request_id, response.status);
    again.extend_from_slice(query.as_bytes());
    for claim in &claims {
        again.extend_from_slice(claim.as_bytes());
    }
    builder.finish(&mut again);
    assert_eq!(again, bytes);
    assert_eq!(again.len(), HEADER_LEN + QueryResponse::SIZE + 2 * ClaimEntry::SIZE);
}

fn check_stats_request(bytes: &[u8]) {
    assert_eq!(request(bytes), (7, Request::Stats));
}

fn check_stats_response(bytes: &[u8]) {
    let response = response(bytes);
    assert_eq!((response.opcode, response.request_id, response.status), (Opcode::Stats as u8, 7, Status::Ok));
    let (body, tables) = response.stats().expect("STATS body decodes");
    assert_eq!((body.shard_id.get(), body.shard_count.get()), (1, 2));
    assert_eq!(body.uptime_ms.get(), 3_600_000);
    assert_eq!(body.connections.get(), 12);
    assert_eq!((body.envelopes.get(), body.envelopes_max.get()), (1500, 1_000_000));
    assert_eq!((body.claims.get(), body.claims_max.get()), (75_000, 100_000_000));
    assert_eq!(body.requests.get(), 250_000);
    assert_eq!((body.forwarded_out.get(), body.forwarded_in.get()), (61_000, 59_500));
    assert_eq!((body.creates.get(), body.opens.get(), body.expired.get()), (1500, 70_000, 20));
    assert_eq!((body.bytes_in.get(), body.bytes_out.get()), (10_000_000, 11_000_000));
    assert_eq!((body.connections_refused.get(), body.log_syncs.get()), (3, 9_000));
    assert_eq!(body.memory_bytes.get(), 64 << 20);

    let counts: Vec<RequestCount> = tables.request_counts().collect();
    let found: Vec<(u8, u16, u64)> =
        counts.iter().map(|c| (c.opcode, c.status.get(), c.count.get())).collect();
    let (ok, sold_out) = (Status::Ok as u16, Status::SoldOut as u16);
    assert_eq!(
        found,
        [
            (0x10, ok, 1_500),
            (0x11, ok, 100_000),
            (0x11, sold_out, 40_000),
            (0x12, ok, 70_000),
            (0x13, ok, 38_498),
            (0x20, ok, 2)
        ]
    );
    let answered: u64 = counts.iter().map(|c| c.count.get()).sum();
    assert_eq!(answered, body.requests.get(), "the counts add up to requests");

    let bounds: Vec<u64> = tables.bucket_bounds_us().collect();
    assert_eq!(bounds, [1_000, 10_000, 100_000]);
    let histograms: Vec<_> = tables.histograms().collect();
    let found: Vec<(HistogramKind, u8, u64, Vec<u64>)> = histograms
        .iter()
        .map(|h| (h.kind(), h.header.opcode, h.header.sum_us.get(), h.buckets().collect()))
        .collect();
    let request = HistogramKind::Request;
    assert_eq!(
        found,
        [
            (request, 0x10, 1_200_000, vec![1_300, 190, 10, 0]),
            (request, 0x11, 84_600_000, vec![120_000, 20_500, 500, 0]),
            (request, 0x12, 49_350_000, vec![58_000, 12_000, 450, 50]),
            (request, 0x13, 5_774_700, vec![38_400, 98, 0, 0]),
            (request, 0x20, 95, vec![1, 0, 0, 0]),
            (HistogramKind::LogSync, 0, 2_700_000, vec![8_900, 100, 0, 0]),
        ]
    );
    assert_eq!(histograms[5].count(), body.log_syncs.get(), "one log sync timed per sync");
    // Received = answered - forwarded in + forwarded out, less this STATS (timed after its answer).
    let timed: u64 = histograms[..5].iter().map(|h| h.count()).sum();
    assert_eq!(timed, answered - body.forwarded_in.get() + body.forwarded_out.get() - 1);

    let mut again = Vec::new();
    let builder = ResponseBuilder::begin(&mut again, response.opcode, response.request_id, response.status);
    again.extend_from_slice(body.as_bytes());
    for count in &counts {
        again.extend_from_slice(count.as_bytes());
    }
    for bound in &bounds {
        again.extend_from_slice(&bound.to_le_bytes());
    }
    for histogram in &histograms {
        again.extend_from_slice(histogram.header.as_bytes());
        for bucket in histogram.buckets() {
            again.extend_from_slice(&bucket.to_le_bytes());
        }
    }
    builder.finish(&mut again);
    assert_eq!(again, bytes);
    assert_eq!(again.len(), HEADER_LEN + StatsResponse::SIZE + StatsTables::wire_len(&body));
}

fn check_error_response(bytes: &[u8], opcode: u8, request_id: u64, status: Status) {
    let response = empty_response(bytes);
    assert_eq!((response.opcode, response.request_id, response.status), (opcode, request_id, status));
}

/// Checks one named example; panics for a name this file does not know.
fn check(example: &Example) {
    let bytes = example.bytes.as_slice();
    match example.name.as_str() {
        "hello-request" => check_hello_request(bytes),
        "hello-response" => check_hello_response(bytes),
        "ping-request" => check_ping_request(bytes),
        "ping-response" => check_ping_response(bytes),
        "create-request" => check_create_request(bytes),
        "create-response" => check_create_response(bytes),
        "grab-request" => check_envelope_user(bytes, Opcode::Grab, 4),
        "grab-response" => check_grab_response(bytes, 4, Status::Ok, [CREATED_AT_MS + 65_000, 0, 4]),
        "grab-sold-out-response" => check_grab_response(bytes, 9, Status::SoldOut, [0, 0, 0]),
        "grab-already-grabbed-response" => {
            check_grab_response(bytes, 11, Status::AlreadyGrabbed, [0, 2731, 4])
        }
        "open-request" => check_envelope_user(bytes, Opcode::Open, 5),
        "open-response" => check_open_response(bytes),
        "query-request" => check_query_request(bytes),
        "query-response" => check_query_response(bytes),
        "stats-request" => check_stats_request(bytes),
        "stats-response" => check_stats_response(bytes),
        "malformed-frame-response" => {
            check_error_response(bytes, Opcode::Grab as u8, 8, Status::MalformedFrame)
        }
        "unknown-opcode-response" => check_error_response(bytes, 0x7f, 10, Status::UnknownOpcode),
        other => panic!("docs/PROTOCOL.md has a hex example {other:?} that golden.rs does not check"),
    }
}

#[test]
fn every_hex_example_replays_through_the_codec() {
    let examples = examples(DOC);
    assert!(!examples.is_empty(), "docs/PROTOCOL.md has no ```hex frame=... blocks");
    for example in &examples {
        assert!(!example.bytes.is_empty(), "example {} is empty", example.name);
        check(example);
    }
}

#[test]
fn every_expected_example_is_in_the_document_once() {
    let examples = examples(DOC);
    for name in EXPECTED {
        let found = examples.iter().filter(|e| e.name == name).count();
        assert_eq!(found, 1, "docs/PROTOCOL.md should hold example {name:?} once");
    }
    assert_eq!(examples.len(), EXPECTED.len());
}

#[test]
fn hex_block_parser_reads_offsets_and_skips_ascii() {
    let doc = "text\n```hex frame=x\n00000000: 4842 0102  HB..\n```\n";
    let found = examples(doc);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, "x");
    assert_eq!(found[0].bytes, [0x48, 0x42, 0x01, 0x02]);
    // ASCII that happens to look like hex must not be read as bytes.
    let doc = "```hex frame=y\n00000000: 6162  ab\n```\n";
    assert_eq!(examples(doc)[0].bytes, [0x61, 0x62]);
    assert!(examples("no blocks here").is_empty());
}

#[test]
#[should_panic(expected = "offset")]
fn hex_block_parser_refuses_a_wrong_offset() {
    let _ = examples("```hex frame=z\n00000010: 4842\n```\n");
}
