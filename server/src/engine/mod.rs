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
//! `retention_secs` after their expiry, then are evicted and their slots freed.
//!
//! A GRAB or OPEN touches one envelope's memory and nothing else: envelopes sit
//! in a slab addressed by their id (see `slab.rs`), and each keeps its own
//! claims and reservations (see `envelope.rs` and `shares.rs`).
//!
//! GRAB and OPEN, and the envelope and share helpers they run, are
//! `#[inline(always)]`: the compiler left them out of line, and the calls and
//! register saves cost about 55 of some 420 instructions a storm request took
//! (callgrind). What is rare (expiry, lapses, a broken invariant's message)
//! stays out of line and `#[cold]`.

mod chunked_queue;
mod config;
mod envelope;
mod journal;
mod pool;
mod refusal;
mod rng;
mod shares;
mod slab;
pub mod split;
mod timers;

use hongbao_protocol::body::{
    ClaimEntry, CreateRequest, CreateResponse, EnvelopeKind, EnvelopeState, GrabResponse, OpenResponse,
    QueryResponse,
};
use hongbao_protocol::{EnvelopeId, Status};
use zerocopy::little_endian::{U32, U64};

pub use config::*;
pub use envelope::Envelope;
pub use rng::Rng;
pub use shares::{Holding, INLINE_SHARES_MAX};
pub use slab::SLOTS_MAX;

use crate::wal::{Record, RecordKind};
pub use journal::Journal;
use pool::SharePool;
use refusal::Refusal;
pub use refusal::UNWRITTEN_OPENS_MAX;
use shares::Shares;
use slab::Slab;
use timers::Timers;

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

/// A log record that does not fit the state it is replayed onto.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Its sequence number is not the next one.
    #[error("record {seq} out of sequence (expected {expected})")]
    Sequence { seq: u64, expected: u64 },
    /// It names an envelope of another shard, or one the shard does not hold.
    #[error("record {seq} names envelope {envelope}, which this shard does not hold")]
    UnknownEnvelope { seq: u64, envelope: u64 },
    /// It contradicts the envelope's state.
    #[error("record {seq} ({kind:?}) contradicts envelope {envelope}: {why}")]
    Contradiction { seq: u64, kind: RecordKind, envelope: u64, why: &'static str },
}

/// One shard's envelopes.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    envelopes: Slab,
    /// Share slots held: counts of the envelopes held, added up.
    claims_held: u64,
    /// (due time, envelope id): expiries, then evictions.
    timers: Timers,
    rng: Rng,
    counters: EngineCounters,
    journal: Journal,
    /// The highest log record the answers given since the last
    /// [`Engine::take_depends`] show (see there); 0 for none.
    depends: u64,
    /// Small envelopes' share storage, taken back at eviction.
    pool: SharePool,
    /// Once the log has failed: changes refused, and the paid shares it
    /// never wrote (see [`Engine::refuse_changes`]).
    refusal: Refusal,
}

impl Engine {
    /// An empty engine.
    pub fn new(config: EngineConfig) -> Engine {
        let rng = Rng::new(config.seed ^ u64::from(config.shard_id).rotate_left(32));
        Engine {
            config,
            envelopes: Slab::default(),
            claims_held: 0,
            timers: Timers::default(),
            rng,
            counters: EngineCounters::default(),
            journal: Journal::new(false, 1),
            depends: 0,
            pool: SharePool::default(),
            refusal: Refusal::default(),
        }
    }

    /// From now on CREATE, GRAB and OPEN answer `unavailable` where they
    /// would make a change (the log failed: no change can be made durable).
    /// Everything they decide before that still answers as usual, in the
    /// order PROTOCOL.md gives: a bad argument, an unknown envelope, and,
    /// most of all, a share paid before: a client that lost its connection in
    /// the failure and asks again learns its amount (section 3.3), at once if
    /// its record was written, and `unavailable` if it never will be (see
    /// [`Engine::note_unwritten`]). There is no way back: the shard restarts.
    pub fn refuse_changes(&mut self) {
        if self.refusal.refusing() {
            return;
        }
        self.refusal.begin();
        // What is still journaled will never be written either.
        let mut unwritten = Vec::new();
        self.journal.take(&mut unwritten);
        self.refusal.note_unwritten(&unwritten);
    }

    /// The log failed and will not make `records` durable (its writer took
    /// them and could not write them all, or took them after the failure;
    /// part of a failed write may still reach the disk): a repeated
    /// OPEN or GRAB of a share one of them paid answers `unavailable`, and of
    /// any other paid share its amount, at once (see `refusal.rs`).
    pub fn note_unwritten(&mut self, records: &[Record]) {
        self.refusal.note_unwritten(records);
    }

    /// Whether [`Engine::refuse_changes`] was called.
    pub fn refuses_changes(&self) -> bool {
        self.refusal.refusing()
    }

    /// Turns the journal on: from now on every change is also a numbered log
    /// record, the first numbered `next_seq`. Call after replay.
    pub fn enable_journal(&mut self, next_seq: u64) {
        self.journal = Journal::new(true, next_seq);
    }

    /// Moves the records of the changes made since the last call into `into`.
    pub fn take_journal(&mut self, into: &mut Vec<Record>) {
        self.journal.take(into);
    }

    /// The number of the last record journaled (0 before the first).
    pub fn journal_last_seq(&self) -> u64 {
        self.journal.next_seq() - 1
    }

    /// The highest log record the answers given since the last call depend
    /// on (0: none), and starts over. An answer that shows money, the
    /// caller's change or another's, must not go out before the change is
    /// durable: a repeated OPEN or GRAB answers the amount of the first, a
    /// QUERY lists claims and totals, and the server may crash before their
    /// records are synced. (Answers that show only passing state, a fresh
    /// reservation, "sold out", "no reservation", "expired", do not wait.)
    pub fn take_depends(&mut self) -> u64 {
        std::mem::take(&mut self.depends)
    }

    /// Records waiting for the log.
    pub fn journal_pending(&self) -> usize {
        self.journal.pending()
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

    /// Timers waiting (expiries and evictions).
    pub fn timers_pending(&self) -> usize {
        self.timers.len()
    }

    /// Counters for STATS.
    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// An envelope, for tests and checks.
    pub fn envelope(&self, id: u64) -> Option<&Envelope> {
        self.lookup(id).and_then(|key| self.envelopes.get(key))
    }

    /// The slab key of `id`, if `id` names this shard.
    fn lookup(&self, id: u64) -> Option<u64> {
        let id = EnvelopeId(id);
        (id.shard() == self.config.shard_id).then_some(id.seq())
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
            EnvelopeKind::Fixed if !total.is_multiple_of(count64) => return Err(Status::NotDivisible),
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
        if self.envelopes.len() as u64 >= cfg.envelopes_max || self.claims_held + count64 > cfg.claims_max {
            return Err(Status::ServerFull);
        }
        if self.refusal.refusing() {
            return Err(Status::Unavailable);
        }
        let Some(key) = self.envelopes.next_key() else {
            return Err(Status::ServerFull);
        };
        let id = EnvelopeId::new(cfg.shard_id, key).0;
        let expires_at_ms = now_ms + u64::from(expires_in) * 1000;
        let shares = Shares::new(count, &mut self.pool);
        let mut envelope = Envelope::new(id, sender, total, count, kind, now_ms, expires_at_ms, shares);
        envelope.assert_invariants(cfg.share_cap_cents);
        let kind_code = kind as u8;
        envelope.changed_seq = self
            .journal
            .push(|seq| Record::create(seq, id, sender, total, count, kind_code, now_ms, expires_at_ms));
        self.depends = self.depends.max(envelope.changed_seq);
        let inserted = self.envelopes.insert(envelope);
        assert_eq!(inserted, key);
        self.claims_held += count64;
        self.timers.push(expires_at_ms, id);
        self.counters.creates += 1;
        Ok(CreateResponse { envelope: U64::new(id), expires_at_ms: U64::new(expires_at_ms) })
    }

    /// GRAB: reserves one share for `user` if one is free.
    #[inline(always)]
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
        let cap = self.config.share_cap_cents;
        let ttl_ms = self.config.reservation_ttl_ms;
        let key = self.lookup(envelope_id);
        let Some(env) = current(&mut self.envelopes, &mut self.journal, &mut self.counters, key, now_ms)
        else {
            return (Status::NotFound, answer);
        };
        let status = match env.holding(user) {
            Some(Holding::Paid { index }) => match self.refusal.paid_share_written(envelope_id, user) {
                // Paid in memory, lost to the log: nothing to show.
                Some(false) => Status::Unavailable,
                written => {
                    answer.amount_cents = env.claims()[index as usize].amount_cents;
                    if written.is_none() {
                        // "Already paid X": money shown, so it waits for the records.
                        self.depends = self.depends.max(env.changed_seq);
                    }
                    Status::AlreadyGrabbed
                }
            },
            Some(Holding::Reserved { until_ms }) => {
                answer.hold_until_ms = U64::new(until_ms);
                Status::AlreadyGrabbed
            }
            None => match env.state {
                EnvelopeState::Expired => Status::Expired,
                EnvelopeState::Finished => Status::SoldOut,
                EnvelopeState::Active if env.shares_free() == 0 => Status::SoldOut,
                EnvelopeState::Active if self.refusal.refusing() => Status::Unavailable,
                EnvelopeState::Active => {
                    let until_ms = now_ms + ttl_ms;
                    env.reserve(user, until_ms);
                    env.assert_invariants(cap);
                    answer.hold_until_ms = U64::new(until_ms);
                    Status::Ok
                }
            },
        };
        if matches!(status, Status::Ok | Status::AlreadyGrabbed) {
            answer.shares_free = U32::new(env.shares_free());
        }
        // Nothing else a GRAB says shows money: a reservation is never logged
        // (its OPEN waits for its own record), and "sold out" or a count of
        // free shares is a passing state, as reservations lapse, not a
        // promise; so they wait for no one's OPEN.
        (status, answer)
    }

    /// OPEN: pays the user's reservation; asked again, answers the same amount.
    #[inline(always)]
    pub fn open(&mut self, now_ms: u64, envelope_id: u64, user: u64) -> (Status, OpenResponse) {
        let mut answer =
            OpenResponse { amount_cents: U64::new(0), order: U32::new(0), reserved: U32::new(0) };
        if user == 0 {
            return (Status::InvalidArgument, answer);
        }
        let cap = self.config.share_cap_cents;
        let key = self.lookup(envelope_id);
        let Some(env) = current(&mut self.envelopes, &mut self.journal, &mut self.counters, key, now_ms)
        else {
            return (Status::NotFound, answer);
        };
        match env.holding(user) {
            Some(Holding::Paid { index }) => {
                match self.refusal.paid_share_written(envelope_id, user) {
                    Some(false) => return (Status::Unavailable, answer),
                    // Written before the log failed: shown at once.
                    Some(true) => {}
                    // Asked again: the amount paid the first time, which must
                    // be durable before it is shown (it may have been paid a
                    // moment ago, on another connection).
                    None => self.depends = self.depends.max(env.changed_seq),
                }
                let claim = &env.claims()[index as usize];
                assert_eq!(claim.user.get(), user, "holding points at another user's claim");
                answer.amount_cents = claim.amount_cents;
                answer.order = claim.order;
                return (Status::Ok, answer);
            }
            Some(Holding::Reserved { .. }) => {}
            None if env.state == EnvelopeState::Expired => return (Status::Expired, answer),
            None => return (Status::NoReservation, answer),
        }
        assert_eq!(env.state, EnvelopeState::Active, "a reservation outlived its envelope");
        if self.refusal.refusing() {
            return (Status::Unavailable, answer);
        }

        let m = env.remaining_cents;
        let n = u64::from(env.shares_unpaid());
        let amount = match env.kind {
            EnvelopeKind::Random => split::random_share(m, n, cap, &mut self.rng),
            EnvelopeKind::Fixed => split::fixed_share(env.total_cents, u64::from(env.count)),
        };
        assert!(amount >= 1 && amount <= cap && amount <= m, "share {amount} of {m} cents");
        let order = env.pay(user, amount);
        env.assert_invariants(cap);
        env.changed_seq = self.journal.push(|seq| Record::open(seq, envelope_id, user, amount, order));
        self.depends = self.depends.max(env.changed_seq);
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
        let key = self.lookup(envelope_id);
        let env = current(&mut self.envelopes, &mut self.journal, &mut self.counters, key, now_ms)
            .ok_or(Status::NotFound)?;
        self.depends = self.depends.max(env.changed_seq);
        let limit = page_limit.min(hongbao_protocol::limits::MAX_QUERY_PAGE) as usize;
        let start = (page_start as usize).min(env.claims().len());
        let page = &env.claims()[start..(start + limit).min(env.claims().len())];
        let (best_user, best_amount) = match env.best {
            Some(i) => (env.claims()[i as usize].user, env.claims()[i as usize].amount_cents),
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

    /// Runs the timers due by `now_ms`: expires envelopes (recording the
    /// refund) and evicts those past their expiry plus retention.
    /// Returns how many timers ran; at most `budget`, so one call never stalls
    /// the shard.
    pub fn tick(&mut self, now_ms: u64, budget: usize) -> usize {
        let retention_ms = u64::from(self.config.retention_secs) * 1000;
        let mut ran = 0;
        while ran < budget {
            let Some((_, id)) = self.timers.pop_due(now_ms) else { break };
            ran += 1;
            let Some(key) = self.lookup(id) else { continue };
            let Some(env) = self.envelopes.get_mut(key) else { continue };
            // Expire first, so that the refund is recorded before eviction
            // even when a late tick finds the envelope past its retention.
            if env.expire_if_due(now_ms) {
                note_expired(&mut self.journal, &mut self.counters, env);
            }
            let state = env.state;
            // Saturating: expiry times come from the log too.
            let evict_at_ms = env.expires_at_ms.saturating_add(retention_ms);
            let expires_at_ms = env.expires_at_ms;
            match state {
                EnvelopeState::Active => self.timers.push(expires_at_ms, id),
                _ if now_ms >= evict_at_ms => self.evict(id),
                _ => self.timers.push(evict_at_ms, id),
            }
        }
        ran
    }

    fn evict(&mut self, id: u64) {
        let Some(key) = self.lookup(id) else { return };
        let Some(env) = self.envelopes.remove(key) else { return };
        assert_ne!(env.state, EnvelopeState::Active, "evicting a live envelope");
        self.claims_held -= u64::from(env.count);
        self.counters.evicted += 1;
        let at_ms = env.expires_at_ms.saturating_add(u64::from(self.config.retention_secs) * 1000);
        self.journal.push(|seq| Record::evict(seq, id, at_ms));
        if let Shares::Inline(inline) = env.into_shares() {
            self.pool.recycle(inline);
        }
    }

    /// Applies one record read back from the log. Records come in sequence
    /// and each must fit the state the ones before it made; anything else is
    /// an error, never a panic and never a skip.
    pub fn replay(&mut self, record: &Record) -> Result<(), ReplayError> {
        let seq = record.seq.get();
        let id = record.envelope.get();
        let kind = record.kind();
        let contradiction = |why| ReplayError::Contradiction { seq, kind, envelope: id, why };
        let unknown = ReplayError::UnknownEnvelope { seq, envelope: id };
        let expected = self.journal.next_seq();
        if !self.journal.replayed(seq) {
            return Err(ReplayError::Sequence { seq, expected });
        }
        let key = self.lookup(id).ok_or(unknown.clone())?;
        let cap = self.config.share_cap_cents;
        match kind {
            RecordKind::Create => {
                let count = (record.field(2) & 0xffff_ffff) as u32;
                let envelope_kind = EnvelopeKind::from_u8((record.field(2) >> 32) as u8)
                    .ok_or(contradiction("unknown kind"))?;
                let total = record.field(1);
                let fits = match envelope_kind {
                    EnvelopeKind::Random => total <= u64::from(count) * cap,
                    EnvelopeKind::Fixed => {
                        total.is_multiple_of(u64::from(count)) && total / u64::from(count) <= cap
                    }
                };
                if !fits {
                    return Err(contradiction("shares do not fit the share cap"));
                }
                let (created, expires) = (record.field(3), record.field(4));
                let shares = Shares::new(count, &mut self.pool);
                let env =
                    Envelope::new(id, record.field(0), total, count, envelope_kind, created, expires, shares);
                if !self.envelopes.insert_at(key, env) {
                    return Err(contradiction("its slot is taken"));
                }
                self.claims_held += u64::from(count);
                self.timers.push(expires, id);
                self.counters.creates += 1;
            }
            RecordKind::Open => {
                let env = self.envelopes.get_mut(key).ok_or(unknown)?;
                let (user, amount, order) = (record.field(0), record.field(1), record.field(2));
                if env.state != EnvelopeState::Active {
                    return Err(contradiction("the envelope is not active"));
                }
                if env.holding(user).is_some() {
                    return Err(contradiction("the user already holds a share"));
                }
                let unpaid = u64::from(env.shares_unpaid());
                let rest_fits = env
                    .remaining_cents
                    .checked_sub(amount)
                    .is_some_and(|rest| rest >= unpaid - 1 && rest <= (unpaid - 1).saturating_mul(cap));
                if amount > cap || !rest_fits || order != u64::from(env.paid_count()) + 1 {
                    return Err(contradiction("the amount or order does not fit"));
                }
                if env.kind == EnvelopeKind::Fixed && amount != env.total_cents / u64::from(env.count) {
                    return Err(contradiction("a fixed share of the wrong size"));
                }
                env.reserve(user, 0);
                env.pay(user, amount);
                env.assert_invariants(cap);
                self.counters.opens += 1;
            }
            RecordKind::Expire => {
                let env = self.envelopes.get_mut(key).ok_or(unknown)?;
                let refunded = record.field(0);
                if env.remaining_cents != refunded
                    || !env.expire_if_due(env.expires_at_ms.max(record.field(1)))
                {
                    return Err(contradiction("the refund does not match"));
                }
                self.counters.expired += 1;
            }
            RecordKind::Evict => {
                let env = self.envelopes.get(key).ok_or(unknown)?;
                if env.state == EnvelopeState::Active {
                    return Err(contradiction("evicting a live envelope"));
                }
                self.evict(id);
            }
        }
        Ok(())
    }

    /// A compacted image of the engine for a snapshot: for every envelope held,
    /// its CREATE, its OPENs in order and its EXPIRE if it expired, numbered
    /// from 1; and the generation of every slot. Replaying the records onto an
    /// empty engine and restoring the generations rebuilds this engine
    /// (reservations aside, which are never logged).
    pub fn image(&self) -> (Vec<Record>, Vec<u32>) {
        let len: usize = self
            .envelopes
            .iter()
            .map(|env| 1 + env.claims().len() + usize::from(env.state == EnvelopeState::Expired))
            .sum();
        let mut records = Vec::with_capacity(len);
        let mut seq = 0;
        let mut next = || {
            seq += 1;
            seq
        };
        for env in self.envelopes.iter() {
            let id = env.id;
            records.push(Record::create(
                next(),
                id,
                env.sender,
                env.total_cents,
                env.count,
                env.kind as u8,
                env.created_at_ms,
                env.expires_at_ms,
            ));
            for claim in env.claims() {
                records.push(Record::open(
                    next(),
                    id,
                    claim.user.get(),
                    claim.amount_cents.get(),
                    claim.order.get(),
                ));
            }
            if env.state == EnvelopeState::Expired {
                records.push(Record::expire(next(), id, env.refunded_cents, env.expires_at_ms));
            }
        }
        (records, self.envelopes.generations())
    }

    /// Restores a snapshot taken by [`Engine::image`] that covers the log up
    /// to record `covers`, onto an empty engine. The log after `covers` is
    /// then replayed as usual.
    pub fn restore(
        &mut self,
        records: &[Record],
        generations: &[u32],
        covers: u64,
    ) -> Result<(), ReplayError> {
        assert_eq!(self.envelope_count(), 0, "restore onto an empty engine");
        self.journal = Journal::new(false, 1);
        self.envelopes.expect_slots(generations.len());
        for record in records {
            self.replay(record)?;
        }
        self.envelopes.restore_generations(generations);
        self.journal = Journal::new(false, covers + 1);
        Ok(())
    }

    /// Ends a replay: rebuilds what the log does not carry.
    pub fn finish_replay(&mut self) {
        self.envelopes.rebuild_free();
        self.assert_all_invariants();
    }

    /// Checks every envelope's invariants and holdings. Costs a walk of the
    /// whole shard: for tests and start-up, not per request.
    pub fn assert_all_invariants(&self) {
        let mut claims = 0u64;
        for env in self.envelopes.iter() {
            env.assert_invariants(self.config.share_cap_cents);
            env.assert_holdings();
            claims += u64::from(env.count);
        }
        assert_eq!(claims, self.claims_held);
    }
}

/// The envelope with `key` (`None`: an id that names none) as of `now_ms`:
/// expired (its refund journaled) if its time has come, and its lapsed
/// reservations returned. Every request starts here, so time-driven changes
/// never wait for the timer tick.
fn current<'a>(
    envelopes: &'a mut Slab,
    journal: &mut Journal,
    counters: &mut EngineCounters,
    key: Option<u64>,
    now_ms: u64,
) -> Option<&'a mut Envelope> {
    let env = envelopes.get_mut(key?)?;
    if env.expire_if_due(now_ms) {
        note_expired(journal, counters, env);
    }
    env.release_lapsed(now_ms);
    Some(env)
}

/// Counts an expiry and writes its record.
///
/// The record does not become the envelope's `changed_seq`: an expiry follows
/// from the clock and the durable CREATE and OPENs alone (the refund is what
/// they left), so a recovered log that lost it expires the envelope again,
/// the same. Answers that show it need not wait for it, and an eviction
/// (of an envelope already settled) likewise.
fn note_expired(journal: &mut Journal, counters: &mut EngineCounters, env: &Envelope) {
    counters.expired += 1;
    journal.push(|seq| Record::expire(seq, env.id, env.refunded_cents, env.expires_at_ms));
}
