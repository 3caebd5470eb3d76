//! The STATS answer's tables (`docs/PROTOCOL.md` section 7.7): every way a
//! table can be cut short, overrun its body, break its limit or its rule is
//! refused with the typed error that names the fault; nothing here may panic.

use hongbao_protocol::body::{
    FixedBody, HistogramHeader, HistogramKind, RequestCount, StatsResponse, StatsTables, OPCODE_OTHER,
};
use hongbao_protocol::codec::write_response;
use hongbao_protocol::limits::{MAX_STATS_BUCKET_BOUNDS, MAX_STATS_HISTOGRAMS, MAX_STATS_REQUEST_COUNTS};
use hongbao_protocol::response::Response;
use hongbao_protocol::{decode_frame, FrameError, Opcode, Status, HEADER_LEN};
use zerocopy::little_endian::{U16, U64};
use zerocopy::{FromZeros, IntoBytes};

const STATS: u8 = Opcode::Stats as u8;
const OK: u16 = Status::Ok as u16;
const GRAB: u8 = Opcode::Grab as u8;
const REQUEST: u8 = HistogramKind::Request as u8;
const LOG_SYNC: u8 = HistogramKind::LogSync as u8;

/// A STATS body: the fixed part with the lengths of the tables given, then
/// the tables. Lengths are those of the tables unless `lens` overrides them.
#[derive(Clone, Debug, Default)]
struct Body {
    counts: Vec<(u8, u16, u64)>,
    bounds: Vec<u64>,
    /// (kind, opcode, buckets): as many buckets as given, whatever the bounds.
    histograms: Vec<(u8, u8, Vec<u64>)>,
    lens: Option<[u16; 3]>,
}

impl Body {
    /// A valid answer with something in every table.
    fn valid() -> Body {
        Body {
            counts: vec![(OPCODE_OTHER, 13, 1), (GRAB, OK, 5), (GRAB, 1, 2), (STATS, OK, 1)],
            bounds: vec![100, 1000],
            histograms: vec![
                (REQUEST, OPCODE_OTHER, vec![1, 0, 0]),
                (REQUEST, GRAB, vec![4, 2, 1]),
                (LOG_SYNC, 0, vec![0, 3, 0]),
            ],
            lens: None,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut fixed = StatsResponse::new_zeroed();
        let [counts, bounds, histograms] = self.lens.unwrap_or([
            self.counts.len() as u16,
            self.bounds.len() as u16,
            self.histograms.len() as u16,
        ]);
        fixed.request_counts_len = U16::new(counts);
        fixed.bucket_bounds_len = U16::new(bounds);
        fixed.histograms_len = U16::new(histograms);
        let mut body = fixed.as_bytes().to_vec();
        for (opcode, status, count) in &self.counts {
            let entry = RequestCount {
                opcode: *opcode,
                status: U16::new(*status),
                count: U64::new(*count),
                ..Default::default()
            };
            body.extend_from_slice(entry.as_bytes());
        }
        for bound in &self.bounds {
            body.extend_from_slice(&bound.to_le_bytes());
        }
        for (kind, opcode, buckets) in &self.histograms {
            body.extend_from_slice(
                HistogramHeader { kind: *kind, opcode: *opcode, ..Default::default() }.as_bytes(),
            );
            for bucket in buckets {
                body.extend_from_slice(&bucket.to_le_bytes());
            }
        }
        body
    }
}

/// Decodes `body` as a STATS answer's body.
fn decode(body: &[u8]) -> Result<(StatsResponse, Vec<u64>), FrameError> {
    let mut frame = Vec::new();
    write_response(&mut frame, STATS, 7, Status::Ok, &[body]);
    let frame = decode_frame(&frame).expect("header is fine").expect("whole");
    let (fixed, tables) = Response::from_frame(&frame).expect("a response").stats()?;
    // Everything the tables hold, flattened, to show it can all be read.
    let mut seen: Vec<u64> = tables.request_counts().map(|c| c.count.get()).collect();
    seen.extend(tables.bucket_bounds_us());
    seen.extend(tables.histograms().flat_map(|h| h.buckets().collect::<Vec<_>>()));
    Ok((fixed, seen))
}

fn with(edit: impl FnOnce(&mut Body)) -> Result<(StatsResponse, Vec<u64>), FrameError> {
    let mut body = Body::valid();
    edit(&mut body);
    decode(&body.bytes())
}

/// An edit of the valid body and the error it must cause.
type Case = (fn(&mut Body), FrameError);

fn entry_error(table: &'static str, index: usize, rule: &'static str) -> FrameError {
    FrameError::BadTableEntry { table, index, rule }
}

#[test]
fn a_valid_answer_and_an_empty_one_decode() {
    let (fixed, seen) = decode(&Body::valid().bytes()).unwrap();
    assert_eq!(
        (fixed.request_counts_len.get(), fixed.bucket_bounds_len.get(), fixed.histograms_len.get()),
        (4, 2, 3)
    );
    assert_eq!(seen, [1, 5, 2, 1, 100, 1000, 1, 0, 0, 4, 2, 1, 0, 3, 0]);
    assert_eq!(StatsTables::wire_len(&fixed), 4 * 16 + 2 * 8 + 3 * (16 + 3 * 8));
    let (_, seen) = decode(StatsResponse::new_zeroed().as_bytes()).unwrap();
    assert!(seen.is_empty());
    // Histograms without bounds have one bucket.
    let (_, seen) = with(|b| {
        b.bounds.clear();
        b.histograms = vec![(LOG_SYNC, 0, vec![9])];
    })
    .unwrap();
    assert_eq!(seen[seen.len() - 1], 9);
}

#[test]
fn every_truncation_and_any_extra_byte_is_refused() {
    let bytes = Body::valid().bytes();
    for len in 0..bytes.len() {
        let error = decode(&bytes[..len]).unwrap_err();
        let expected = if len < StatsResponse::SIZE { StatsResponse::SIZE } else { bytes.len() };
        assert_eq!(error, FrameError::BadBodyLength { opcode: STATS, expected, len }, "cut at {len}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let error = decode(&longer).unwrap_err();
    assert_eq!(
        error,
        FrameError::BadBodyLength { opcode: STATS, expected: bytes.len(), len: bytes.len() + 1 }
    );
}

#[test]
fn lengths_that_overrun_or_fall_short_of_the_body_are_refused() {
    let valid = Body::valid();
    let len = valid.bytes().len();
    for (lens, expected) in [
        ([5, 2, 3], len + 16),
        ([3, 2, 3], len - 16),
        ([4, 3, 3], len + 8 + 3 * 8),
        ([4, 1, 3], len - 8 - 3 * 8),
        ([4, 2, 4], len + 16 + 3 * 8),
        ([4, 2, 0], len - 3 * (16 + 3 * 8)),
        ([0, 0, 0], StatsResponse::SIZE),
    ] {
        let body = Body { lens: Some(lens), ..valid.clone() };
        let error = decode(&body.bytes()).unwrap_err();
        assert_eq!(error, FrameError::BadBodyLength { opcode: STATS, expected, len }, "{lens:?}");
    }
}

#[test]
fn lengths_above_their_limits_are_refused_before_the_body_is_read() {
    let limits = [
        ("request_counts_len", MAX_STATS_REQUEST_COUNTS),
        ("bucket_bounds_len", MAX_STATS_BUCKET_BOUNDS),
        ("histograms_len", MAX_STATS_HISTOGRAMS),
    ];
    for (i, (field, max)) in limits.into_iter().enumerate() {
        for value in [max + 1, u16::MAX] {
            let mut lens = [0; 3];
            lens[i] = value;
            let body = Body { lens: Some(lens), ..Body::default() };
            let error = decode(&body.bytes()).unwrap_err();
            assert_eq!(error, FrameError::FieldTooLarge { field, value: value.into(), max: max.into() });
        }
        // At the limit the length is trusted, and the body is then too short.
        let mut lens = [0; 3];
        lens[i] = max;
        let body = Body { lens: Some(lens), ..Body::default() };
        assert!(matches!(decode(&body.bytes()), Err(FrameError::BadBodyLength { .. })));
    }
}

#[test]
fn reserved_bytes_of_entries_name_their_frame_offset() {
    let valid = Body::valid().bytes();
    let counts_at = StatsResponse::SIZE;
    let histograms_at = counts_at + 4 * RequestCount::SIZE + 2 * 8;
    let mut reserved: Vec<usize> = Vec::new();
    for entry in 0..4 {
        reserved.extend([1, 4, 5, 6, 7].map(|b| counts_at + entry * RequestCount::SIZE + b));
    }
    for histogram in 0..3 {
        reserved.extend((2..8).map(|b| histograms_at + histogram * (HistogramHeader::SIZE + 3 * 8) + b));
    }
    for at in reserved {
        let mut body = valid.clone();
        body[at] = 0x5a;
        assert_eq!(
            decode(&body).unwrap_err(),
            FrameError::ReservedNotZero { offset: HEADER_LEN + at },
            "byte {at}"
        );
    }
}

#[test]
fn request_counts_follow_their_rules() {
    let rule = "not after the entry before it in (opcode, status) order";
    let cases: [Case; 6] = [
        (|b| b.counts[1].2 = 0, entry_error("request_counts", 1, "count is zero")),
        (
            |b| b.counts[2].1 = Status::ALL.len() as u16,
            FrameError::UnknownStatus { status: Status::ALL.len() as u16 },
        ),
        (|b| b.counts[0].0 = 0x7f, entry_error("request_counts", 0, "opcode not in the table")),
        (|b| b.counts.swap(1, 2), entry_error("request_counts", 2, rule)),
        (|b| b.counts[2] = b.counts[1], entry_error("request_counts", 2, rule)),
        (|b| b.counts.swap(0, 3), entry_error("request_counts", 1, rule)),
    ];
    for (i, (edit, expected)) in cases.into_iter().enumerate() {
        assert_eq!(with(edit).unwrap_err(), expected, "case {i}");
    }
}

#[test]
fn bucket_bounds_strictly_increase() {
    let rule = "not above the bound before it";
    assert_eq!(with(|b| b.bounds = vec![100, 100]).unwrap_err(), entry_error("bucket_bounds_us", 1, rule));
    assert_eq!(with(|b| b.bounds = vec![1000, 100]).unwrap_err(), entry_error("bucket_bounds_us", 1, rule));
    assert!(with(|b| b.bounds = vec![0, u64::MAX]).is_ok());
}

#[test]
fn histograms_follow_their_rules() {
    let order = "not after the histogram before it in (kind, opcode) order";
    let cases: [Case; 6] = [
        (|b| b.histograms[1].0 = 2, entry_error("histograms", 1, "kind not in the table")),
        (|b| b.histograms[1].1 = 0x7f, entry_error("histograms", 1, "opcode not in the table")),
        (|b| b.histograms[2].1 = GRAB, entry_error("histograms", 2, "log sync with an opcode")),
        (|b| b.histograms.swap(0, 2), entry_error("histograms", 1, order)),
        (|b| b.histograms[1].1 = OPCODE_OTHER, entry_error("histograms", 1, order)),
        (|b| b.histograms.swap(0, 1), entry_error("histograms", 1, order)),
    ];
    for (i, (edit, expected)) in cases.into_iter().enumerate() {
        assert_eq!(with(edit).unwrap_err(), expected, "case {i}");
    }
}

#[test]
fn table_errors_close_the_connection() {
    let error = with(|b| b.bounds = vec![5, 5]).unwrap_err();
    assert_eq!((error.status(), error.skippable_len()), (Status::MalformedFrame, None));
    assert_eq!(error.to_string(), "bucket_bounds_us entry 1: not above the bound before it");
}
