//! STATS: the figures of the shard that answers, the same ones the metrics
//! endpoint publishes for it. A client wanting the whole server asks every
//! shard-aware port (the CLI does) and adds them up.
//!
//! Response: [`StatsResponse`] (152 bytes), then three tables whose lengths it
//! gives, in this order:
//!
//! 1. `request_counts_len` [`RequestCount`]s (16 bytes each): answers by opcode
//!    and status, only the pairs answered at least once, in increasing
//!    (opcode, status) order;
//! 2. `bucket_bounds_len` u64 upper bounds of the histogram buckets, in µs,
//!    strictly increasing; a last bucket without bound (+Inf) follows them;
//! 3. `histograms_len` histograms, each a [`HistogramHeader`] (16 bytes) and
//!    `bucket_bounds_len + 1` u64 bucket counts, in increasing (kind, opcode)
//!    order.
//!
//! Sparse tables rather than dense ones: an entry names its opcode byte and
//! status code, so a table that grows in a later version shifts nothing, and a
//! young shard's answer stays a few hundred bytes. [`StatsTables::decode`]
//! checks every length and rule before anything is read.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{fixed_body, FixedBody};
use crate::error::FrameError;
use crate::limits::{MAX_STATS_BUCKET_BOUNDS, MAX_STATS_HISTOGRAMS, MAX_STATS_REQUEST_COUNTS};
use crate::opcode::Opcode;
use crate::status::Status;

/// The opcode byte that stands, in a [`RequestCount`] or a request
/// histogram, for requests whose opcode the table does not name. No opcode
/// is 0x00, and an answer to a header that could not be read carries it.
pub const OPCODE_OTHER: u8 = 0x00;

/// Bytes of one bucket bound and of one bucket count.
const WORD: usize = 8;

/// STATS response fixed part (status OK only). The request body is empty.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StatsResponse {
    /// The shard that answered.
    pub shard_id: U16,
    /// Shards the server runs.
    pub shard_count: U16,
    /// Zero.
    pub reserved: U32,
    /// Milliseconds since the shard started.
    pub uptime_ms: U64,
    /// Connections open on this shard now.
    pub connections: U64,
    /// Envelopes held (live and retained for QUERY).
    pub envelopes: U64,
    /// Most envelopes this shard may hold.
    pub envelopes_max: U64,
    /// Share slots held: the counts of the envelopes held, added up.
    pub claims: U64,
    /// Most share slots this shard may hold.
    pub claims_max: U64,
    /// Requests answered by this shard's engine.
    pub requests: U64,
    /// Requests this shard sent to their owning shard.
    pub forwarded_out: U64,
    /// Requests other shards sent to this one.
    pub forwarded_in: U64,
    /// Envelopes created.
    pub creates: U64,
    /// Shares paid.
    pub opens: U64,
    /// Envelopes expired with a refund recorded.
    pub expired: U64,
    /// Bytes read from clients.
    pub bytes_in: U64,
    /// Bytes written to clients.
    pub bytes_out: U64,
    /// Connections refused at accept because a limit was reached.
    pub connections_refused: U64,
    /// Log writes made durable (one fdatasync each).
    pub log_syncs: U64,
    /// Resident memory of the whole server process, bytes.
    pub memory_bytes: U64,
    /// [`RequestCount`]s in the first table; at most [`MAX_STATS_REQUEST_COUNTS`].
    pub request_counts_len: U16,
    /// Bucket bounds in the second table; at most [`MAX_STATS_BUCKET_BOUNDS`].
    pub bucket_bounds_len: U16,
    /// Histograms in the third table; at most [`MAX_STATS_HISTOGRAMS`].
    pub histograms_len: U16,
    /// Zero.
    pub reserved1: U16,
}
fixed_body!(StatsResponse, 152, [reserved @ 4, reserved1 @ 150]);

/// Requests of one opcode answered with one status.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RequestCount {
    /// An opcode byte of the table, or [`OPCODE_OTHER`].
    pub opcode: u8,
    /// Zero.
    pub reserved0: u8,
    /// A status code of the table.
    pub status: U16,
    /// Zero.
    pub reserved1: U32,
    /// How many; never 0 (a pair never answered is left out).
    pub count: U64,
}
fixed_body!(RequestCount, 16, [reserved0 @ 1, reserved1 @ 4]);

/// What a histogram measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum HistogramKind {
    /// Requests of one opcode received on this shard's connections: from the
    /// read that brought them in to their answers written.
    Request = 0,
    /// Log writes: one write and its fdatasync.
    LogSync = 1,
}

impl HistogramKind {
    /// The kind for a wire byte.
    pub const fn from_u8(value: u8) -> Option<HistogramKind> {
        match value {
            0 => Some(HistogramKind::Request),
            1 => Some(HistogramKind::LogSync),
            _ => None,
        }
    }

    /// Snake_case name.
    pub const fn name(self) -> &'static str {
        match self {
            HistogramKind::Request => "request",
            HistogramKind::LogSync => "log_sync",
        }
    }
}

/// The fixed part of one histogram; `bucket_bounds_len + 1` u64 counts follow.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HistogramHeader {
    /// A [`HistogramKind`] byte.
    pub kind: u8,
    /// For [`HistogramKind::Request`] an opcode byte of the table or
    /// [`OPCODE_OTHER`]; for [`HistogramKind::LogSync`] 0.
    pub opcode: u8,
    /// Zero.
    pub reserved0: U16,
    /// Zero.
    pub reserved1: U32,
    /// Sum of the durations recorded, µs.
    pub sum_us: U64,
}
fixed_body!(HistogramHeader, 16, [reserved0 @ 2, reserved1 @ 4]);

/// The three tables after a [`StatsResponse`], borrowed from the frame. Every
/// entry was checked by [`StatsTables::decode`].
#[derive(Clone, Copy, Debug)]
pub struct StatsTables<'a> {
    counts: &'a [u8],
    bounds: &'a [u8],
    histograms: &'a [u8],
}

/// One histogram of a STATS answer.
#[derive(Clone, Copy, Debug)]
pub struct Histogram<'a> {
    /// What it measures, for which opcode, and the sum of its durations.
    pub header: HistogramHeader,
    buckets: &'a [u8],
}

impl<'a> StatsTables<'a> {
    /// Bytes the tables take, for the lengths in `fixed`. Saturating, so that
    /// lengths not yet checked against their limits cannot overflow.
    pub const fn wire_len(fixed: &StatsResponse) -> usize {
        let bounds = fixed.bucket_bounds_len.get() as usize;
        let histogram = HistogramHeader::SIZE + (bounds + 1) * WORD;
        (fixed.request_counts_len.get() as usize * RequestCount::SIZE)
            .saturating_add(bounds * WORD)
            .saturating_add((fixed.histograms_len.get() as usize).saturating_mul(histogram))
    }

    /// Checks the tables that follow `fixed` in `body` (the whole body, fixed
    /// part included): lengths within their limits and adding up to the
    /// body, reserved bytes zero, every entry by its rule.
    pub fn decode(opcode: u8, fixed: &StatsResponse, body: &'a [u8]) -> Result<StatsTables<'a>, FrameError> {
        let limits = [
            ("request_counts_len", fixed.request_counts_len.get(), MAX_STATS_REQUEST_COUNTS),
            ("bucket_bounds_len", fixed.bucket_bounds_len.get(), MAX_STATS_BUCKET_BOUNDS),
            ("histograms_len", fixed.histograms_len.get(), MAX_STATS_HISTOGRAMS),
        ];
        for (field, value, max) in limits {
            if value > max {
                return Err(FrameError::FieldTooLarge { field, value: value.into(), max: max.into() });
            }
        }
        let expected = StatsResponse::SIZE + StatsTables::wire_len(fixed);
        let Some(tail) = body.get(StatsResponse::SIZE..).filter(|_| body.len() == expected) else {
            return Err(FrameError::BadBodyLength { opcode, expected, len: body.len() });
        };
        let (counts, rest) = tail.split_at(usize::from(fixed.request_counts_len.get()) * RequestCount::SIZE);
        let (bounds, histograms) = rest.split_at(usize::from(fixed.bucket_bounds_len.get()) * WORD);
        let tables = StatsTables { counts, bounds, histograms };
        tables.check_counts(opcode)?;
        tables.check_bounds()?;
        tables.check_histograms(opcode)?;
        Ok(tables)
    }

    /// The request counts, in increasing (opcode, status) order.
    pub fn request_counts(&self) -> impl Iterator<Item = RequestCount> + 'a {
        self.counts.chunks_exact(RequestCount::SIZE).filter_map(|c| RequestCount::read_from_bytes(c).ok())
    }

    /// The upper bounds of the buckets but the last, µs, increasing.
    pub fn bucket_bounds_us(&self) -> impl Iterator<Item = u64> + 'a {
        words(self.bounds)
    }

    /// The histograms, in increasing (kind, opcode) order.
    pub fn histograms(&self) -> impl Iterator<Item = Histogram<'a>> + 'a {
        let size = HistogramHeader::SIZE + self.bounds.len() + WORD;
        self.histograms.chunks_exact(size).filter_map(|h| {
            let (header, buckets) = HistogramHeader::read_from_prefix(h).ok()?;
            Some(Histogram { header, buckets })
        })
    }

    fn check_counts(&self, opcode: u8) -> Result<(), FrameError> {
        let mut last = None;
        for (index, bytes) in self.counts.chunks_exact(RequestCount::SIZE).enumerate() {
            let entry = RequestCount::decode(opcode, bytes)
                .map_err(|e| shift(e, StatsResponse::SIZE + index * RequestCount::SIZE))?;
            let status = entry.status.get();
            if Status::from_u16(status).is_none() {
                return Err(FrameError::UnknownStatus { status });
            }
            let bad = |rule| FrameError::BadTableEntry { table: "request_counts", index, rule };
            if !counted_opcode(entry.opcode) {
                return Err(bad("opcode not in the table"));
            }
            if entry.count.get() == 0 {
                return Err(bad("count is zero"));
            }
            if last.is_some_and(|l| l >= (entry.opcode, status)) {
                return Err(bad("not after the entry before it in (opcode, status) order"));
            }
            last = Some((entry.opcode, status));
        }
        Ok(())
    }

    fn check_bounds(&self) -> Result<(), FrameError> {
        let mut last = None;
        for (index, bound) in words(self.bounds).enumerate() {
            if last.is_some_and(|l| l >= bound) {
                let rule = "not above the bound before it";
                return Err(FrameError::BadTableEntry { table: "bucket_bounds_us", index, rule });
            }
            last = Some(bound);
        }
        Ok(())
    }

    fn check_histograms(&self, opcode: u8) -> Result<(), FrameError> {
        let size = HistogramHeader::SIZE + self.bounds.len() + WORD;
        let at = StatsResponse::SIZE + self.counts.len() + self.bounds.len();
        let mut last = None;
        for (index, bytes) in self.histograms.chunks_exact(size).enumerate() {
            let (header, _) =
                HistogramHeader::decode_prefix(opcode, bytes).map_err(|e| shift(e, at + index * size))?;
            let bad = |rule| FrameError::BadTableEntry { table: "histograms", index, rule };
            match HistogramKind::from_u8(header.kind) {
                None => return Err(bad("kind not in the table")),
                Some(HistogramKind::Request) if !counted_opcode(header.opcode) => {
                    return Err(bad("opcode not in the table"))
                }
                Some(HistogramKind::LogSync) if header.opcode != 0 => {
                    return Err(bad("log sync with an opcode"))
                }
                Some(_) => {}
            }
            if last.is_some_and(|l| l >= (header.kind, header.opcode)) {
                return Err(bad("not after the histogram before it in (kind, opcode) order"));
            }
            last = Some((header.kind, header.opcode));
        }
        Ok(())
    }
}

impl Histogram<'_> {
    /// What it measures; checked when the answer was decoded.
    pub fn kind(&self) -> HistogramKind {
        HistogramKind::from_u8(self.header.kind).unwrap_or(HistogramKind::Request)
    }

    /// The bucket counts (not cumulative), one per bound and the last for
    /// durations above every bound.
    pub fn buckets(&self) -> impl Iterator<Item = u64> + '_ {
        words(self.buckets)
    }

    /// Durations recorded: the bucket counts added up.
    pub fn count(&self) -> u64 {
        self.buckets().fold(0, u64::saturating_add)
    }
}

/// Whether a STATS table may name `opcode`.
fn counted_opcode(opcode: u8) -> bool {
    opcode == OPCODE_OTHER || Opcode::from_u8(opcode).is_some()
}

/// The little-endian u64s of `bytes`.
fn words(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks_exact(WORD).filter_map(|w| U64::read_from_bytes(w).ok()).map(|w| w.get())
}

/// A reserved-byte error of an entry, moved to the entry's place in the body
/// (`decode_prefix` counts from the entry's first byte).
fn shift(error: FrameError, at: usize) -> FrameError {
    match error {
        FrameError::ReservedNotZero { offset } => FrameError::ReservedNotZero { offset: offset + at },
        other => other,
    }
}
