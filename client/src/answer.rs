//! Answers as typed values: one decoder shared by the blocking client and the
//! pipeline, so the body rules are written once.
//!
//! The rules (`docs/PROTOCOL.md` section 2.5): an answer with a *frame-level*
//! status (malformed_frame, unsupported_version, unknown_opcode,
//! frame_too_large: the server could not read the request) has an empty body,
//! whatever its opcode; a GRAB or OPEN answer with any other status carries its
//! full fixed body (a refused GRAB still says how many shares are free); every
//! other opcode carries a body only when the status is OK. Any other body
//! length is a malformed answer. A refused GRAB or OPEN whose body is empty
//! because the refusal was frame-level reads as the all-zero body.
//!
//! Values are checked against the money rules too ([`crate::contract`]): an
//! answer that keeps the framing but breaks a rule is an error, not a value.
//!
//! Everything here is `Copy` and borrows the variable parts (HELLO's ports, a
//! QUERY page's claims, STATS's tables) from the receive buffer: the pipeline hands out answers
//! without allocating.

use hongbao_protocol::body::{
    ClaimEntry, CreateResponse, EnvelopeKind, EnvelopeState, FixedBody, GrabResponse, OpenResponse,
    QueryResponse,
};
use hongbao_protocol::hot_path_client::{EnvelopeUserAnswer, EnvelopeUserResponse};
use hongbao_protocol::response::{Claims, Response, ShardPorts};
use hongbao_protocol::{EnvelopeId, FrameError, Opcode, Status, VERSION};
use zerocopy::FromZeros;

use crate::contract;
use crate::error::ClientError;
use crate::stats::StatsAnswer;

/// What HELLO says about the server, less the port list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloInfo {
    /// Protocol version the server speaks on this connection.
    pub version: u8,
    /// Shards the server runs.
    pub shard_count: u16,
    /// The shard that answered.
    pub shard_id: u16,
    /// Largest body the server accepts.
    pub max_body_len: u32,
    /// Most claims one QUERY page returns.
    pub max_query_page: u32,
}

/// A created envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Created {
    /// Its id; names the shard that owns it.
    pub envelope: EnvelopeId,
    /// When it expires, Unix ms by the server's clock.
    pub expires_at_ms: u64,
}

/// A GRAB answer, with any status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Grabbed {
    /// Until when the reservation holds (Unix ms); 0 when the user holds none.
    pub hold_until_ms: u64,
    /// Already paid to this user; 0 if not opened yet.
    pub amount_cents: u64,
    /// Shares neither reserved nor paid, after this request.
    pub shares_free: u32,
}

/// An OPEN answer, with any status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Opened {
    /// Paid to this user; 0 unless OK.
    pub amount_cents: u64,
    /// 1-based opening order of this share; 0 unless OK.
    pub order: u32,
}

/// An envelope's totals, as QUERY reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeSummary {
    /// Envelope id.
    pub envelope: EnvelopeId,
    /// The sender.
    pub sender: u64,
    /// Total put in.
    pub total_cents: u64,
    /// Number of shares.
    pub count: u32,
    /// Shares paid; also the number of claims.
    pub paid_count: u32,
    /// Sum of paid shares.
    pub paid_cents: u64,
    /// Neither paid nor refunded.
    pub remaining_cents: u64,
    /// Returned to the sender at expiry.
    pub refunded_cents: u64,
    /// Reservations held now.
    pub reserved_count: u32,
    /// Life-cycle state.
    pub state: EnvelopeState,
    /// How the total is split.
    pub kind: EnvelopeKind,
    /// Creation time, Unix ms.
    pub created_at_ms: u64,
    /// Expiry time, Unix ms.
    pub expires_at_ms: u64,
    /// The user with the largest share (ties: the earlier opener); 0 if none.
    pub best_user: u64,
    /// That user's amount.
    pub best_amount_cents: u64,
}

/// One paid share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Who opened it.
    pub user: u64,
    /// How much.
    pub amount_cents: u64,
    /// 1-based opening order.
    pub order: u32,
}

/// One QUERY page of claims, borrowed from the receive buffer. Every entry was
/// checked when the answer was decoded.
#[derive(Clone, Copy, Debug)]
pub struct ClaimPage<'a> {
    /// Index of the first claim in this page.
    pub page_start: u32,
    /// Claims in this page; at most `limits::MAX_QUERY_PAGE`.
    pub len: u32,
    claims: Claims<'a>,
}

/// The typed body of an answer, by opcode. `None` where the status is not OK
/// and the opcode carries no body then.
#[derive(Clone, Debug)]
pub enum AnswerBody<'a> {
    /// HELLO: the server and its shard-aware ports in shard order.
    Hello(Option<(HelloInfo, ShardPorts<'a>)>),
    /// PING.
    Ping,
    /// CREATE.
    Create(Option<Created>),
    /// GRAB, with every status.
    Grab(Grabbed),
    /// OPEN, with every status.
    Open(Opened),
    /// QUERY: totals and one page of claims. Boxed, as STATS is: the two big
    /// bodies would otherwise make every answer (GRAB and OPEN, the storm's
    /// bulk) a 200-byte value that is copied at each move.
    Query(Option<Box<(EnvelopeSummary, ClaimPage<'a>)>>),
    /// STATS: the fixed part and its tables (see [`StatsAnswer::shard_stats`]).
    Stats(Option<Box<StatsAnswer<'a>>>),
}

/// One answer: its request id, its status and its typed body.
#[derive(Clone, Debug)]
pub struct Answer<'a> {
    /// The id of the request it answers.
    pub request_id: u64,
    /// The outcome; anything but OK is a refusal.
    pub status: Status,
    /// The typed body.
    pub body: AnswerBody<'a>,
}

impl Claim {
    fn from_entry(entry: &ClaimEntry) -> Claim {
        Claim { user: entry.user.get(), amount_cents: entry.amount_cents.get(), order: entry.order.get() }
    }
}

impl<'a> ClaimPage<'a> {
    /// The claims in opening order.
    pub fn iter(&self) -> impl Iterator<Item = Claim> + 'a {
        // Every entry was decoded once already in `decode`, so none is dropped.
        self.claims.iter().filter_map(Result::ok).map(|entry| Claim::from_entry(&entry))
    }
}

impl EnvelopeSummary {
    fn from_wire(q: &QueryResponse) -> Result<EnvelopeSummary, ClientError> {
        let state = EnvelopeState::from_u8(q.state)
            .ok_or(ClientError::UnknownValue { field: "state", value: q.state })?;
        let kind = EnvelopeKind::from_u8(q.kind)
            .ok_or(ClientError::UnknownValue { field: "kind", value: q.kind })?;
        Ok(EnvelopeSummary {
            envelope: EnvelopeId(q.envelope.get()),
            sender: q.sender.get(),
            total_cents: q.total_cents.get(),
            count: q.count.get(),
            paid_count: q.paid_count.get(),
            paid_cents: q.paid_cents.get(),
            remaining_cents: q.remaining_cents.get(),
            refunded_cents: q.refunded_cents.get(),
            reserved_count: q.reserved_count.get(),
            state,
            kind,
            created_at_ms: q.created_at_ms.get(),
            expires_at_ms: q.expires_at_ms.get(),
            best_user: q.best_user.get(),
            best_amount_cents: q.best_amount_cents.get(),
        })
    }
}

/// Reads `response` as the answer to a request of opcode `sent`, and checks
/// its values against the protocol's money rules ([`crate::contract`]).
pub fn decode<'a>(sent: Opcode, response: &Response<'a>) -> Result<Answer<'a>, ClientError> {
    let answer = decode_unchecked(sent, response)?;
    contract::check(&answer)?;
    Ok(answer)
}

/// [`decode`] without the money rules: only the framing and the body's
/// shape are checked. For a caller that judges the values itself and wants
/// a broken rule counted, not the end of its connection, as the load
/// generator's money checks do.
pub fn decode_unchecked<'a>(sent: Opcode, response: &Response<'a>) -> Result<Answer<'a>, ClientError> {
    if response.opcode != sent as u8 {
        return Err(ClientError::OpcodeMismatch { expected: sent, found: response.opcode });
    }
    let status = response.status;
    let refused = status != Status::Ok;
    let body_allowed =
        if status.is_frame_level() { false } else { !refused || matches!(sent, Opcode::Grab | Opcode::Open) };
    if !body_allowed && !response.body.is_empty() {
        return Err(ClientError::UnexpectedBody { opcode: sent, status, len: response.body.len() });
    }
    let body = match sent {
        Opcode::Grab => AnswerBody::Grab(grabbed(&always_body::<GrabResponse>(response)?)),
        Opcode::Open => AnswerBody::Open(opened(&always_body::<OpenResponse>(response)?)),
        _ if refused => refused_body(sent),
        Opcode::Hello => AnswerBody::Hello(Some(hello(response)?)),
        Opcode::Ping => {
            if !response.body.is_empty() {
                let len = response.body.len();
                return Err(FrameError::BadBodyLength { opcode: sent as u8, expected: 0, len }.into());
            }
            AnswerBody::Ping
        }
        Opcode::Create => {
            let c: CreateResponse = response.fixed()?;
            let envelope = EnvelopeId(c.envelope.get());
            AnswerBody::Create(Some(Created { envelope, expires_at_ms: c.expires_at_ms.get() }))
        }
        Opcode::Query => AnswerBody::Query(Some(Box::new(query(response)?))),
        Opcode::Stats => AnswerBody::Stats(Some(Box::new(StatsAnswer::decode(response)?))),
    };
    Ok(Answer { request_id: response.request_id, status, body })
}

/// A GRAB or OPEN answer the protocol's fast path read
/// ([`read_envelope_user_response`](hongbao_protocol::hot_path_client::read_envelope_user_response)),
/// as the answer to a request of opcode `sent`: the same [`Answer`] that
/// [`decode`] makes of the same bytes.
pub fn from_envelope_user(sent: Opcode, fast: &EnvelopeUserResponse) -> Result<Answer<'static>, ClientError> {
    let answer = from_envelope_user_unchecked(sent, fast)?;
    contract::check(&answer)?;
    Ok(answer)
}

/// [`from_envelope_user`] without the money rules, as [`decode_unchecked`]
/// is [`decode`] without them.
pub fn from_envelope_user_unchecked(
    sent: Opcode,
    fast: &EnvelopeUserResponse,
) -> Result<Answer<'static>, ClientError> {
    let body = match (sent, &fast.body) {
        (Opcode::Grab, EnvelopeUserAnswer::Grab(g)) => AnswerBody::Grab(grabbed(g)),
        (Opcode::Open, EnvelopeUserAnswer::Open(o)) => AnswerBody::Open(opened(o)),
        (expected, body) => {
            return Err(ClientError::OpcodeMismatch { expected, found: body.opcode() as u8 });
        }
    };
    Ok(Answer { request_id: fast.request_id, status: fast.status, body })
}

fn refused_body(sent: Opcode) -> AnswerBody<'static> {
    match sent {
        Opcode::Hello => AnswerBody::Hello(None),
        Opcode::Ping => AnswerBody::Ping,
        Opcode::Create => AnswerBody::Create(None),
        Opcode::Grab => AnswerBody::Grab(Grabbed::default()),
        Opcode::Open => AnswerBody::Open(Opened::default()),
        Opcode::Query => AnswerBody::Query(None),
        Opcode::Stats => AnswerBody::Stats(None),
    }
}

/// The fixed body of a GRAB or OPEN answer: all zeros after a frame-level
/// refusal (checked empty by the caller), else exactly the body's size.
fn always_body<T: FixedBody + FromZeros>(response: &Response<'_>) -> Result<T, ClientError> {
    if response.status.is_frame_level() {
        return Ok(T::new_zeroed());
    }
    Ok(response.fixed()?)
}

fn grabbed(g: &GrabResponse) -> Grabbed {
    Grabbed {
        hold_until_ms: g.hold_until_ms.get(),
        amount_cents: g.amount_cents.get(),
        shares_free: g.shares_free.get(),
    }
}

fn opened(o: &OpenResponse) -> Opened {
    Opened { amount_cents: o.amount_cents.get(), order: o.order.get() }
}

fn hello<'a>(response: &Response<'a>) -> Result<(HelloInfo, ShardPorts<'a>), ClientError> {
    let (h, ports) = response.hello()?;
    // We offered exactly VERSION, so any other answer breaks the handshake.
    if h.version != VERSION {
        return Err(FrameError::UnsupportedVersion { version: h.version }.into());
    }
    let info = HelloInfo {
        version: h.version,
        shard_count: h.shard_count.get(),
        shard_id: h.shard_id.get(),
        max_body_len: h.max_body_len.get(),
        max_query_page: h.max_query_page.get(),
    };
    Ok((info, ports))
}

fn query<'a>(response: &Response<'a>) -> Result<(EnvelopeSummary, ClaimPage<'a>), ClientError> {
    // `Response::query` has checked page_len against MAX_QUERY_PAGE and the body length.
    let (q, claims) = response.query()?;
    let summary = EnvelopeSummary::from_wire(&q)?;
    for entry in claims.iter() {
        entry?;
    }
    Ok((summary, ClaimPage { page_start: q.page_start.get(), len: q.page_len.get(), claims }))
}
