//! The envelope engine of one shard: CREATE, GRAB, OPEN, QUERY and expiry.
//!
//! The engine is plain single-threaded data: its shard owns it, so nothing here
//! locks. It does no I/O and reads no clock; every call takes `now_ms`, which
//! the server reads once per batch and tests set by hand, so expiry and lapsed
//! reservations are tested without sleeping.
//!
//! Memory is bounded at CREATE: a shard holds at most `envelopes_max` envelopes
//! and `claims_max` share slots (the counts of its envelopes added up); past
//! either, CREATE answers `server_full`. Envelopes stay queryable for
//! `retention_secs` after expiry, then are evicted and their slots freed.

mod config;
mod envelope;
mod rng;
pub mod split;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use ahash::AHashMap;
use hongbao_protocol::body::{
    ClaimEntry, CreateRequest, CreateResponse, EnvelopeKind, EnvelopeState, GrabResponse, OpenResponse,
    QueryResponse,
};
use hongbao_protocol::{EnvelopeId, Status};
use zerocopy::little_endian::{U32, U64};

pub use config::*;
pub use envelope::Envelope;
pub use rng::Rng;

/// What a user holds of one envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holding {
    /// A reservation until this time (Unix ms).
    Reserved { until_ms: u64 },
    /// A paid share: index into the envelope's claims.
    Paid { index: u32 },
}

/// Counters the engine keeps for STATS.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineCounters {
    /// Envelopes created.
    pub creates: u64,
    /// Shares paid.
    pub opens: u64,
    /// Envelopes expired (refund recorded).
    pub expired: u64,
    /// Envelopes evicted after retention.
    pub evicted: u64,
}

/// One shard's envelopes.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    envelopes: AHashMap<u64, Envelope>,
    /// (envelope id, user) to what the user holds. One map for the shard keeps
    /// an envelope small and makes the one-share-per-user check one lookup.
    holdings: AHashMap<(u64, u64), Holding>,
    /// Share slots held: counts of the envelopes held, added up.
    claims_held: u64,
    /// (due time, envelope id): expiries, then evictions.
    timers: BinaryHeap<Reverse<(u64, u64)>>,
    next_seq: u64,
    rng: Rng,
    counters: EngineCounters,
}

impl Engine {
    /// An empty engine.
    pub fn new(config: EngineConfig) -> Engine {
        let rng = Rng::new(config.seed ^ u64::from(config.shard_id).rotate_left(32));
        Engine {
            config,
            envelopes: AHashMap::new(),
            holdings: AHashMap::new(),
            claims_held: 0,
            timers: BinaryHeap::new(),
            next_seq: 1,
            rng,
            counters: EngineCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Envelopes held.
    pub fn envelope_count(&self) -> u64 {
        self.envelopes.len() as u64
    }

    /// Share slots held.
    pub fn claims_held(&self) -> u64 {
        self.claims_held
    }

    /// Counters for STATS.
    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// An envelope, for tests and checks.
    pub fn envelope(&self, id: u64) -> Option<&Envelope> {
        self.envelopes.get(&id)
    }

    /// CREATE: validates, then makes an envelope owned by this shard.
    pub fn create(&mut self, now_ms: u64, req: &CreateRequest) -> Result<CreateResponse, Status> {
        let cfg = &self.config;
        let sender = req.sender.get();
        let total = req.total_cents.get();
        let count = req.count.get();
        let Some(kind) = EnvelopeKind::from_u8(req.kind) else {
            return Err(Status::InvalidArgument);
        };
        if sender == 0 {
            return Err(Status::InvalidArgument);
        }
        if count == 0 || count > cfg.max_count {
            return Err(Status::CountOutOfRange);
        }
        let count64 = u64::from(count);
        if total < count64 {
            return Err(Status::TotalTooSmall);
        }
        match kind {
            EnvelopeKind::Random if total > count64 * cfg.share_cap_cents => {
                return Err(Status::ShareAboveCap)
            }
            EnvelopeKind::Fixed if total % count64 != 0 => return Err(Status::NotDivisible),
            EnvelopeKind::Fixed if total / count64 > cfg.share_cap_cents => {
                return Err(Status::ShareAboveCap)
            }
            _ => {}
        }
        let expires_in = match req.expires_in_secs.get() {
            0 => cfg.expiry_secs_default,
            secs if secs > cfg.expiry_secs_max => return Err(Status::ExpiryOutOfRange),
            secs => secs,
        };
        if self.envelopes.len() as u64 >= cfg.envelopes_max
            || self.claims_held + count64 > cfg.claims_max
            || self.next_seq > EnvelopeId::SEQ_MAX
        {
            return Err(Status::ServerFull);
        }

        let id = EnvelopeId::new(cfg.shard_id, self.next_seq).0;
        self.next_seq += 1;
        let expires_at_ms = now_ms + u64::from(expires_in) * 1000;
        let envelope = Envelope {
            id,
            sender,
            total_cents: total,
            count,
            kind,
            created_at_ms: now_ms,
            expires_at_ms,
            remaining_cents: total,
            paid_cents: 0,
            refunded_cents: 0,
            reserved: 0,
            state: EnvelopeState::Active,
            best: None,
            claims: Vec::new(),
            holds: VecDeque::new(),
        };
        envelope.assert_invariants(cfg.share_cap_cents);
        self.envelopes.insert(id, envelope);
        self.claims_held += count64;
        self.timers.push(Reverse((expires_at_ms, id)));
        self.counters.creates += 1;
        Ok(CreateResponse { envelope: U64::new(id), expires_at_ms: U64::new(expires_at_ms) })
    }

    /// GRAB: reserves one share for `user` if one is free.
    pub fn grab(&mut self, now_ms: u64, envelope_id: u64, user: u64) -> (Status, GrabResponse) {
        let mut answer = GrabResponse {
            hold_until_ms: U64::new(0),
            amount_cents: U64::new(0),
            shares_free: U32::new(0),
            reserved: U32::new(0),
        };
        if user == 0 {
            return (Status::InvalidArgument, answer);
        }
        let cfg = &self.config;
        let Some(env) = self.envelopes.get_mut(&envelope_id) else {
            return (Status::NotFound, answer);
        };
        expire_if_due(env, &mut self.holdings, &mut self.counters, now_ms);
        release_lapsed(env, &mut self.holdings, now_ms);

        let key = (envelope_id, user);
        match self.holdings.get(&key).copied() {
            Some(Holding::Paid { index }) => {
                answer.amount_cents = env.claims[index as usize].amount_cents;
                answer.shares_free = U32::new(env.shares_free());
                return (Status::AlreadyGrabbed, answer);
            }
            Some(Holding::Reserved { until_ms }) if until_ms > now_ms => {
                answer.hold_until_ms = U64::new(until_ms);
                answer.shares_free = U32::new(env.shares_free());
                return (Status::AlreadyGrabbed, answer);
            }
            Some(Holding::Reserved { .. }) => {
                // Lapsed but not yet swept (its deadline equals `now_ms`).
                self.holdings.remove(&key);
                env.reserved -= 1;
            }
            None => {}
        }
        match env.state {
            EnvelopeState::Expired => return (Status::Expired, answer),
            EnvelopeState::Finished => return (Status::SoldOut, answer),
            EnvelopeState::Active => {}
        }
        if env.shares_free() == 0 {
            return (Status::SoldOut, answer);
        }
        let until_ms = now_ms + cfg.reservation_ttl_ms;
        self.holdings.insert(key, Holding::Reserved { until_ms });
        env.holds.push_back((user, until_ms));
        env.reserved += 1;
        env.assert_invariants(cfg.share_cap_cents);
        answer.hold_until_ms = U64::new(until_ms);
        answer.shares_free = U32::new(env.shares_free());
        (Status::Ok, answer)
    }

    /// OPEN: pays the user's reservation; asked again, answers the same amount.
    pub fn open(&mut self, now_ms: u64, envelope_id: u64, user: u64) -> (Status, OpenResponse) {
        let mut answer =
            OpenResponse { amount_cents: U64::new(0), order: U32::new(0), reserved: U32::new(0) };
        if user == 0 {
            return (Status::InvalidArgument, answer);
        }
        let cap = self.config.share_cap_cents;
        let Some(env) = self.envelopes.get_mut(&envelope_id) else {
            return (Status::NotFound, answer);
        };
        expire_if_due(env, &mut self.holdings, &mut self.counters, now_ms);

        let key = (envelope_id, user);
        match self.holdings.get(&key).copied() {
            Some(Holding::Paid { index }) => {
                let claim = &env.claims[index as usize];
                assert_eq!(claim.user.get(), user, "holding points at another user's claim");
                answer.amount_cents = claim.amount_cents;
                answer.order = claim.order;
                return (Status::Ok, answer);
            }
            Some(Holding::Reserved { until_ms }) if until_ms > now_ms => {}
            Some(Holding::Reserved { .. }) => {
                self.holdings.remove(&key);
                env.reserved -= 1;
                return (Status::NoReservation, answer);
            }
            None if env.state == EnvelopeState::Expired => return (Status::Expired, answer),
            None => return (Status::NoReservation, answer),
        }
        assert_eq!(env.state, EnvelopeState::Active, "a reservation outlived its envelope");

        let m = env.remaining_cents;
        let n = u64::from(env.shares_unpaid());
        let amount = match env.kind {
            EnvelopeKind::Random => split::random_share(m, n, cap, &mut self.rng),
            EnvelopeKind::Fixed => split::fixed_share(env.total_cents, u64::from(env.count)),
        };
        assert!(amount >= 1 && amount <= cap && amount <= m, "share {amount} of {m} cents");
        env.remaining_cents -= amount;
        env.paid_cents += amount;
        env.reserved -= 1;
        let index = env.paid_count();
        let order = index + 1;
        env.claims.push(ClaimEntry {
            user: U64::new(user),
            amount_cents: U64::new(amount),
            order: U32::new(order),
            reserved: U32::new(0),
        });
        let beats_best = match env.best {
            Some(best) => amount > env.claims[best as usize].amount_cents.get(),
            None => true,
        };
        if beats_best {
            env.best = Some(index);
        }
        if env.paid_count() == env.count {
            env.state = EnvelopeState::Finished;
            env.holds.clear();
        }
        self.holdings.insert(key, Holding::Paid { index });
        env.assert_invariants(cap);
        self.counters.opens += 1;
        answer.amount_cents = U64::new(amount);
        answer.order = U32::new(order);
        (Status::Ok, answer)
    }

    /// QUERY: totals and up to `page_limit` claims starting at `page_start`.
    pub fn query(
        &mut self,
        now_ms: u64,
        envelope_id: u64,
        page_start: u32,
        page_limit: u32,
    ) -> Result<(QueryResponse, &[ClaimEntry]), Status> {
        let env = self.envelopes.get_mut(&envelope_id).ok_or(Status::NotFound)?;
        expire_if_due(env, &mut self.holdings, &mut self.counters, now_ms);
        release_lapsed(env, &mut self.holdings, now_ms);
        let limit = page_limit.min(hongbao_protocol::limits::MAX_QUERY_PAGE) as usize;
        let start = (page_start as usize).min(env.claims.len());
        let page = &env.claims[start..(start + limit).min(env.claims.len())];
        let (best_user, best_amount) = match env.best {
            Some(i) => (env.claims[i as usize].user, env.claims[i as usize].amount_cents),
            None => (U64::new(0), U64::new(0)),
        };
        let answer = QueryResponse {
            envelope: U64::new(env.id),
            sender: U64::new(env.sender),
            total_cents: U64::new(env.total_cents),
            paid_cents: U64::new(env.paid_cents),
            remaining_cents: U64::new(env.remaining_cents),
            refunded_cents: U64::new(env.refunded_cents),
            created_at_ms: U64::new(env.created_at_ms),
            expires_at_ms: U64::new(env.expires_at_ms),
            best_user,
            best_amount_cents: best_amount,
            count: U32::new(env.count),
            paid_count: U32::new(env.paid_count()),
            reserved_count: U32::new(env.reserved),
            page_start: U32::new(start as u32),
            page_len: U32::new(page.len() as u32),
            state: env.state as u8,
            kind: env.kind as u8,
            reserved: [0; 2],
        };
        Ok((answer, page))
    }

    /// Runs the timers due by `now_ms`: expires envelopes (recording the refund)
    /// and evicts those past retention. Returns how many timers ran; at most
    /// `budget`, so one call never stalls the shard.
    pub fn tick(&mut self, now_ms: u64, budget: usize) -> usize {
        let retention_ms = u64::from(self.config.retention_secs) * 1000;
        let mut ran = 0;
        while ran < budget {
            let Some(Reverse((due_ms, id))) = self.timers.peek().copied() else { break };
            if due_ms > now_ms {
                break;
            }
            self.timers.pop();
            ran += 1;
            let Some(env) = self.envelopes.get_mut(&id) else { continue };
            // Expire first even when eviction is due too (a tick that comes
            // late, a backlog, retention 0): the refund is recorded, and only
            // finished or expired envelopes are evicted.
            expire_if_due(env, &mut self.holdings, &mut self.counters, now_ms);
            let evict_at_ms = env.expires_at_ms + retention_ms;
            if now_ms >= evict_at_ms {
                self.evict(id);
            } else {
                self.timers.push(Reverse((evict_at_ms, id)));
            }
        }
        ran
    }

    fn evict(&mut self, id: u64) {
        let Some(env) = self.envelopes.remove(&id) else { return };
        assert_ne!(env.state, EnvelopeState::Active, "evicting a live envelope");
        for claim in &env.claims {
            let removed = self.holdings.remove(&(id, claim.user.get()));
            assert!(matches!(removed, Some(Holding::Paid { .. })), "claim without holding");
        }
        self.claims_held -= u64::from(env.count);
        self.counters.evicted += 1;
    }

    /// Checks every envelope's invariants and the holdings map against them.
    /// Costs a walk of the whole shard: for tests and start-up, not per request.
    pub fn assert_all_invariants(&self) {
        let mut claims = 0u64;
        let mut paid = 0usize;
        let mut reserved = 0usize;
        for env in self.envelopes.values() {
            env.assert_invariants(self.config.share_cap_cents);
            claims += u64::from(env.count);
            paid += env.claims.len();
            reserved += env.reserved as usize;
            for (i, claim) in env.claims.iter().enumerate() {
                let holding = self.holdings.get(&(env.id, claim.user.get()));
                assert_eq!(holding, Some(&Holding::Paid { index: i as u32 }), "one share per user");
            }
        }
        assert_eq!(claims, self.claims_held);
        assert_eq!(paid + reserved, self.holdings.len(), "holdings without envelope");
    }
}

/// Expires `env` if its time has come: the unpaid remainder is refunded to the
/// sender and every reservation released.
fn expire_if_due(
    env: &mut Envelope,
    holdings: &mut AHashMap<(u64, u64), Holding>,
    counters: &mut EngineCounters,
    now_ms: u64,
) {
    if env.state != EnvelopeState::Active || now_ms < env.expires_at_ms {
        return;
    }
    for (user, until_ms) in env.holds.drain(..) {
        if holdings.get(&(env.id, user)) == Some(&Holding::Reserved { until_ms }) {
            holdings.remove(&(env.id, user));
            env.reserved -= 1;
        }
    }
    assert_eq!(env.reserved, 0, "envelope {}: reservations not in holds", env.id);
    env.refunded_cents = env.remaining_cents;
    env.remaining_cents = 0;
    env.state = EnvelopeState::Expired;
    counters.expired += 1;
}

/// Returns lapsed reservations to the envelope. Holds are in deadline order, so
/// this pops from the front and stops at the first live one: O(1) amortized.
fn release_lapsed(env: &mut Envelope, holdings: &mut AHashMap<(u64, u64), Holding>, now_ms: u64) {
    while let Some(&(user, until_ms)) = env.holds.front() {
        if until_ms > now_ms {
            break;
        }
        env.holds.pop_front();
        if holdings.get(&(env.id, user)) == Some(&Holding::Reserved { until_ms }) {
            holdings.remove(&(env.id, user));
            env.reserved -= 1;
        }
    }
}
