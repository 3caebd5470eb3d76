//! What to send next on a shard, and what to make of each answer.
//!
//! A worker keeps one [`ShardWork`] per server shard; every connection to that
//! shard's port takes its next request from it, so several connections race
//! for the same envelopes at once, as a chat group's members do. A GRAB that
//! answers OK queues that user's OPEN, which is sent before anything new: every
//! grab is followed by its open (but in the GRAB-only micro benchmark). One
//! paid user in `retry_every` (by a hash of the user) then taps again, a GRAB
//! and an OPEN, as users and retrying clients do: both must repeat the share
//! already paid, never pay a second one. The first GRAB or OPEN answered
//! expired or not_found stops the envelope's racers: it is gone for all of
//! them. Answers feed the money checks of [`Ledger`].

pub mod shape;

use std::collections::VecDeque;

use hongbao_client::{requests, Answer, AnswerBody, EnvelopeId, EnvelopeKind};
use hongbao_protocol::{Opcode, Request, Status};

use crate::args::Scenario;
use crate::money::{Ledger, Share};
use crate::violations::Violations;

/// Shares of each envelope in the grab and open micro benchmarks: the
/// server's default largest count.
const MICRO_COUNT: u32 = 10_000;
/// Envelopes the query micro benchmark reads from.
const QUERY_POOL: usize = 64;
/// Claims asked for by each QUERY.
const QUERY_PAGE: u32 = 16;
/// Most requests one shard's setup may take (see [`ShardWork::next_setup_tag`]):
/// the query pool's CREATEs, a GRAB and an OPEN per claim and the repeats,
/// with room for refusals to be retried. A server that refuses more than
/// this fails the run before the load starts.
pub const SETUP_REQUESTS_MAX: usize = 4 * QUERY_POOL * (1 + 4 * QUERY_PAGE as usize);
/// Users are numbered from here up, per worker, so workers never share one.
const USER_SPACE_BITS: u32 = 40;
/// Racers' arrays of retired ledgers kept for new envelopes. A storm retires
/// about as many envelopes as it creates, so a few suffice for the steady
/// state not to allocate one per envelope; the bound caps what a burst of
/// retirements leaves behind.
const SPARE_LEDGERS_MAX: usize = 256;
/// The largest racers' array kept for reuse (a storm's groups have at most
/// 500 members and a few racers each; a hot envelope's 100,000 are let go).
const SPARE_RACERS_MAX: usize = 4096;
/// Envelopes still being driven at the end that the final QUERY checks
/// too, besides the sample of retired ones.
pub const ACTIVE_VERIFIED_MAX: usize = 8;
/// A retired ledger whose array has room for more racers than this is
/// compacted to its payouts before it joins the sample kept for the final
/// QUERY, so the sample holds at most 16 KiB per envelope (a storm's arrays
/// stay as they are: scanning them costs more than keeping them).
const COMPACT_RACERS_OVER: usize = 1024;

/// What a request in flight was, so its answer can be understood.
#[derive(Clone, Copy, Debug)]
pub enum Tag {
    /// CREATE of an envelope that `racers` users, numbered from `first_user`, will grab.
    Create { total_cents: u64, count: u32, racers: u32, first_user: u64 },
    /// GRAB by `user` of the envelope in `slot`; `again`: a repeat by a
    /// user already paid.
    Grab { slot: u32, envelope: u64, user: u64, again: bool },
    /// OPEN by `user` of the envelope in `slot`; `again`: a repeat of an
    /// OPEN already answered OK.
    Open { slot: u32, envelope: u64, user: u64, again: bool },
    /// QUERY of the envelope in `slot`, sent when `paid_before` of its
    /// OPENs had been acknowledged (the server must count at least those).
    Query { slot: u32, envelope: u64, paid_before: u32 },
    /// PING.
    Ping,
}

impl Tag {
    /// The opcode of the request.
    pub fn opcode(&self) -> Opcode {
        match self {
            Tag::Create { .. } => Opcode::Create,
            Tag::Grab { .. } => Opcode::Grab,
            Tag::Open { .. } => Opcode::Open,
            Tag::Query { .. } => Opcode::Query,
            Tag::Ping => Opcode::Ping,
        }
    }

    /// The request to send; envelopes are created to expire in `expires_in_secs`.
    pub fn request(&self, expires_in_secs: u32) -> Request<'static> {
        match *self {
            Tag::Create { total_cents, count, .. } => {
                requests::create(1, total_cents, count, EnvelopeKind::Random, expires_in_secs)
            }
            Tag::Grab { envelope, user, .. } => requests::grab(EnvelopeId(envelope), user),
            Tag::Open { envelope, user, .. } => requests::open(EnvelopeId(envelope), user),
            Tag::Query { envelope, .. } => requests::query(EnvelopeId(envelope), 0, QUERY_PAGE),
            Tag::Ping => Request::Ping,
        }
    }
}

/// An envelope this worker created and is driving.
#[derive(Debug)]
struct Active {
    ledger: Ledger,
    first_user: u64,
    racers: u32,
    next_racer: u32,
    /// GRABs and OPENs sent or queued and not yet answered.
    outstanding: u32,
}

/// One shard's traffic, shared by the worker's connections to that shard.
#[derive(Debug)]
pub struct ShardWork {
    scenario: Scenario,
    cap_cents: u64,
    rng: fastrand::Rng,
    envelopes: Vec<Option<Active>>,
    free: Vec<u32>,
    /// Envelopes with racers still to send GRABs, served round robin.
    grabbable: VecDeque<u32>,
    /// Requests to send before anything new: OPENs after their GRAB answered
    /// OK, and the repeats of paid racers.
    follow_ups: VecDeque<Tag>,
    retry_every: u64,
    creates_in_flight: u32,
    /// Requests handed out and not answered yet, on every connection to the shard.
    requests_out: u32,
    /// Most envelopes in play at once (see [`Self::envelopes_wanted`]).
    target_active: u32,
    grabs_since_query: u64,
    query_every: u64,
    hot_count: u32,
    hot_users: u64,
    next_user: u64,
    /// A uniform sample of the envelopes fully driven and checked over the
    /// whole run (reservoir sampling), for QUERY at the end.
    pub retired: Vec<Ledger>,
    /// Envelopes retired so far while sampling: the reservoir's `n`.
    retired_total: u64,
    /// Racers' arrays of retired ledgers, for the next envelopes' ledgers.
    spare_ledgers: Vec<Vec<Share>>,
    verify_sample: usize,
    /// Money-check failures.
    pub violations: Violations,
    /// CREATEs answered OK over the whole run, warm-up and setup included.
    pub envelopes_created: u64,
    /// The status of the last CREATE refused, if any was.
    pub create_refused: Option<Status>,
}

/// How a worker's traffic is set up.
#[derive(Clone, Debug)]
pub struct WorkSettings {
    /// Scenario.
    pub scenario: Scenario,
    /// Worker index, mixed into seeds and user numbers.
    pub worker: u64,
    /// Requests in flight per connection times connections to the shard.
    pub in_flight: u32,
    /// Seed.
    pub seed: u64,
    /// Storm: one QUERY per this many GRABs.
    pub query_every: u64,
    /// One paid racer in this many repeats its GRAB and OPEN (0: none).
    pub retry_every: u64,
    /// Hot: shares per envelope.
    pub hot_count: u32,
    /// Hot: users per envelope.
    pub hot_users: u64,
    /// Largest share the server allows, cents.
    pub cap_cents: u64,
    /// Retired envelopes kept for the final QUERY: a uniform sample of the run's.
    pub verify_sample: usize,
}

impl ShardWork {
    /// Traffic for one shard.
    pub fn new(settings: &WorkSettings, shard: u16) -> ShardWork {
        let target_active = match settings.scenario {
            Scenario::Storm => settings.in_flight / 4 + 4,
            Scenario::Hot => 1,
            Scenario::Grab | Scenario::Open => 2,
            Scenario::Query | Scenario::Ping | Scenario::Hiccup => 0,
        };
        ShardWork {
            scenario: settings.scenario,
            cap_cents: settings.cap_cents,
            rng: fastrand::Rng::with_seed(settings.seed ^ (settings.worker << 32) ^ u64::from(shard) << 48),
            envelopes: Vec::new(),
            free: Vec::new(),
            grabbable: VecDeque::new(),
            follow_ups: VecDeque::new(),
            retry_every: settings.retry_every,
            creates_in_flight: 0,
            requests_out: 0,
            target_active,
            grabs_since_query: 0,
            query_every: settings.query_every,
            hot_count: settings.hot_count,
            hot_users: settings.hot_users,
            next_user: ((settings.worker << 8) | u64::from(shard)) << USER_SPACE_BITS | 1,
            retired: Vec::new(),
            retired_total: 0,
            spare_ledgers: Vec::new(),
            verify_sample: settings.verify_sample,
            violations: Violations::default(),
            envelopes_created: 0,
            create_refused: None,
        }
    }

    /// The next request to send, or `None` when there is nothing to do until
    /// an answer arrives.
    pub fn next_tag(&mut self) -> Option<Tag> {
        let tag = self.choose_tag();
        self.requests_out += u32::from(tag.is_some());
        tag
    }

    fn choose_tag(&mut self) -> Option<Tag> {
        match self.scenario {
            Scenario::Ping => return Some(Tag::Ping),
            Scenario::Hiccup => return None,
            // The pool was built by the setup ([`Self::next_setup_tag`]).
            Scenario::Query => return self.random_query(),
            _ => {}
        }
        if let Some(tag) = self.follow_ups.pop_front() {
            return Some(tag);
        }
        if self.scenario == Scenario::Storm && self.grabs_since_query >= self.query_every {
            if let Some(tag) = self.random_query() {
                self.grabs_since_query = 0;
                return Some(tag);
            }
        }
        if (self.grabbable.len() as u32 + self.creates_in_flight) < self.envelopes_wanted() {
            return Some(self.create());
        }
        self.next_grab()
    }

    /// How many envelopes to keep taking GRABs: about one per four requests
    /// in flight, so that each has several racers in flight at once, as a
    /// group's members race (a storm's groups send a few racers each). It
    /// follows the requests really in flight, not the depth: an open loop
    /// below its depth's worth would otherwise spread its racers over so
    /// many envelopes that two of one envelope were hardly ever in flight
    /// together. Capped by the depth's worth.
    fn envelopes_wanted(&self) -> u32 {
        match self.scenario {
            Scenario::Storm => (self.requests_out / 4 + 4).min(self.target_active),
            _ => self.target_active,
        }
    }

    /// A GRAB by the next racer of the next envelope in the round robin.
    fn next_grab(&mut self) -> Option<Tag> {
        let slot = self.grabbable.pop_front()?;
        let env = self.envelopes[slot as usize].as_mut().expect("grabbable slot holds an envelope");
        let user = env.first_user + u64::from(env.next_racer);
        env.next_racer += 1;
        env.outstanding += 1;
        let envelope = env.ledger.envelope;
        if env.next_racer < env.racers {
            self.grabbable.push_back(slot);
        }
        self.grabs_since_query += 1;
        Some(Tag::Grab { slot, envelope, user, again: false })
    }

    /// The next request of the setup that runs, one request at a time,
    /// before the load's clock starts; `None` once the setup is done. Only
    /// the query micro benchmark has one: its pool of envelopes with a page
    /// of paid claims each, so that the measured period holds only QUERYs
    /// however slow the machine is.
    pub fn next_setup_tag(&mut self) -> Option<Tag> {
        if self.scenario != Scenario::Query || self.pool_ready() {
            return None;
        }
        let tag = if let Some(tag) = self.follow_ups.pop_front() {
            Some(tag)
        } else {
            let held = self.envelopes.iter().filter(|e| e.is_some()).count();
            if held + (self.creates_in_flight as usize) < QUERY_POOL {
                Some(self.create())
            } else {
                self.next_grab()
            }
        };
        self.requests_out += u32::from(tag.is_some());
        tag
    }

    /// Whether the query pool is whole: every envelope created and every
    /// GRAB, OPEN and repeat answered.
    fn pool_ready(&self) -> bool {
        let held = self.envelopes.iter().filter(|e| e.is_some()).count();
        held >= QUERY_POOL
            && self.creates_in_flight == 0
            && self.grabbable.is_empty()
            && self.follow_ups.is_empty()
            && self.envelopes.iter().flatten().all(|env| env.outstanding == 0)
    }

    fn random_query(&mut self) -> Option<Tag> {
        if self.envelopes.is_empty() {
            return None;
        }
        for _ in 0..4 {
            let slot = self.rng.u32(0..self.envelopes.len() as u32);
            if let Some(env) = &self.envelopes[slot as usize] {
                let paid_before = env.ledger.paid_count() as u32;
                return Some(Tag::Query { slot, envelope: env.ledger.envelope, paid_before });
            }
        }
        None
    }

    fn create(&mut self) -> Tag {
        let (count, racers) = match self.scenario {
            Scenario::Storm => {
                let members = shape::group_size(&mut self.rng);
                let count = shape::share_count(&mut self.rng, members);
                (count, shape::racers(members, count))
            }
            Scenario::Hot => (self.hot_count, self.hot_users.min(u64::from(u32::MAX)) as u32),
            Scenario::Grab | Scenario::Open => (MICRO_COUNT, MICRO_COUNT),
            Scenario::Query | Scenario::Ping | Scenario::Hiccup => (QUERY_PAGE, QUERY_PAGE),
        };
        let total_cents = match self.scenario {
            Scenario::Storm => shape::total_cents(&mut self.rng, count, self.cap_cents),
            _ => u64::from(count) * 100.min(self.cap_cents),
        };
        let first_user = self.next_user;
        self.next_user += u64::from(racers);
        self.creates_in_flight += 1;
        Tag::Create { total_cents, count, racers, first_user }
    }

    /// Takes in the answer to a request sent with `tag`.
    pub fn on_answer(&mut self, tag: Tag, answer: &Answer<'_>) {
        self.requests_out = self.requests_out.saturating_sub(1);
        match (tag, &answer.body) {
            (Tag::Create { total_cents, count, racers, first_user }, AnswerBody::Create(created)) => {
                self.creates_in_flight -= 1;
                let Some(created) = created.filter(|_| answer.status == Status::Ok) else {
                    self.create_refused = Some(answer.status);
                    return;
                };
                self.envelopes_created += 1;
                let active = Active {
                    ledger: Ledger::new_in(
                        created.envelope.0,
                        total_cents,
                        count,
                        first_user,
                        racers,
                        self.spare_ledgers.pop().unwrap_or_default(),
                    ),
                    first_user,
                    racers,
                    next_racer: 0,
                    outstanding: 0,
                };
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.envelopes[slot as usize] = Some(active);
                        slot
                    }
                    None => {
                        self.envelopes.push(Some(active));
                        self.envelopes.len() as u32 - 1
                    }
                };
                if racers > 0 {
                    self.grabbable.push_back(slot);
                }
            }
            (Tag::Grab { .. }, AnswerBody::Grab(grabbed)) => {
                self.envelope_user(tag, answer.status, grabbed.amount_cents, 0)
            }
            (Tag::Open { .. }, AnswerBody::Open(opened)) => {
                self.envelope_user(tag, answer.status, opened.amount_cents, opened.order)
            }
            (Tag::Query { slot, envelope, paid_before }, AnswerBody::Query(Some(query))) => {
                let Some(env) = active(&mut self.envelopes, slot, envelope) else { return };
                let (s, page) = &**query;
                let id = env.ledger.envelope;
                if s.paid_cents + s.refunded_cents + s.remaining_cents != s.total_cents
                    || s.total_cents != env.ledger.total_cents
                    || s.paid_count > s.count
                {
                    self.violations.push(format!("envelope {id}: QUERY's totals do not add up: {s:?}"));
                }
                // OPENs answered before the QUERY was sent are in the
                // server's figures whatever else is in flight.
                if s.paid_count < paid_before {
                    self.violations.push(format!(
                        "envelope {id}: QUERY says {} shares paid, {paid_before} OPENs were acknowledged before it was sent",
                        s.paid_count
                    ));
                }
                env.ledger.check_page(|| page.iter(), &mut self.violations);
            }
            (Tag::Query { .. } | Tag::Ping, _) => {}
            (tag, body) => self.violations.push(format!("answer {body:?} does not fit request {tag:?}")),
        }
    }

    /// Takes in the answer to a GRAB or OPEN (`tag`): its status, the
    /// amount it reports and, an OPEN's, the opening order (0 for a GRAB,
    /// which names none). The storm's bulk comes straight here from the
    /// protocol's fast path, without a decoded [`Answer`].
    pub fn on_envelope_user(&mut self, tag: Tag, status: Status, amount_cents: u64, order: u32) {
        self.requests_out = self.requests_out.saturating_sub(1);
        self.envelope_user(tag, status, amount_cents, order);
    }

    fn envelope_user(&mut self, tag: Tag, status: Status, amount_cents: u64, order: u32) {
        let (slot, envelope, user, grab, again) = match tag {
            Tag::Grab { slot, envelope, user, again } => (slot, envelope, user, true, again),
            Tag::Open { slot, envelope, user, again } => (slot, envelope, user, false, again),
            _ => unreachable!("only GRAB and OPEN answers come here"),
        };
        let Some(env) = active(&mut self.envelopes, slot, envelope) else { return };
        env.outstanding -= 1;
        if again {
            if let Some(v) =
                repeat_violation(&mut env.ledger, grab, user, status, amount_cents, order, self.cap_cents)
            {
                self.violations.push(v);
            }
            self.maybe_retire(slot);
            return;
        }
        match (grab, status) {
            (true, Status::Ok) if self.scenario != Scenario::Grab => {
                env.outstanding += 1;
                self.follow_ups.push_back(Tag::Open { slot, envelope, user, again: false });
            }
            (true, Status::AlreadyGrabbed) => {
                // A fresh user's first GRAB: nothing of its can be there.
                self.violations.push(format!(
                    "envelope {envelope}: user {user}'s first GRAB was answered already_grabbed \
                     ({amount_cents} cents), but it never grabbed before"
                ));
                // What the server says it paid is recorded, so that the final
                // QUERY is judged against it instead of saying this again.
                if amount_cents > 0 {
                    if let Some(v) = env.ledger.record_open(user, amount_cents, 0, self.cap_cents) {
                        self.violations.push(v);
                    }
                }
            }
            (false, Status::Ok) => {
                if order == 0 {
                    self.violations
                        .push(format!("envelope {envelope}: user {user}'s OPEN answered ok, order 0"));
                }
                if let Some(v) = env.ledger.record_open(user, amount_cents, order, self.cap_cents) {
                    self.violations.push(v);
                }
                if repeats(user, self.retry_every) {
                    // This user taps again: both repeats must find the share paid.
                    env.outstanding += 2;
                    self.follow_ups.push_back(Tag::Grab { slot, envelope, user, again: true });
                    self.follow_ups.push_back(Tag::Open { slot, envelope, user, again: true });
                }
            }
            // Gone for every racer: those left would only hear it again.
            (_, Status::Expired | Status::NotFound) if env.next_racer < env.racers => {
                env.next_racer = env.racers;
                // Once per envelope, over the few envelopes raced for.
                self.grabbable.retain(|s| *s != slot);
            }
            _ => {}
        }
        self.maybe_retire(slot);
    }

    /// Retires an envelope whose racers have all been answered.
    #[inline]
    fn maybe_retire(&mut self, slot: u32) {
        let Some(env) = &self.envelopes[slot as usize] else { return };
        if env.next_racer < env.racers || env.outstanding > 0 {
            return;
        }
        if self.scenario == Scenario::Query {
            return; // The query pool is kept.
        }
        self.retire(slot);
    }

    /// Retires the envelope in `slot`: its ledger's last check, then the
    /// sample for the final QUERY. Out of line: once per envelope, while
    /// the check above runs on every answer.
    #[inline(never)]
    fn retire(&mut self, slot: u32) {
        let env = self.envelopes[slot as usize].take().expect("the caller checked");
        self.free.push(slot);
        if let Some(v) = env.ledger.check_complete() {
            self.violations.push(v);
        }
        // A uniform sample of every envelope of the run (Algorithm R: the
        // n-th retired takes one of the k places with probability k/n), not
        // only the last moments of it; an early one the server has evicted
        // by the end is counted unverifiable, not a violation. The ledger
        // not kept lends its racers' array to a new envelope.
        let storage = if self.verify_sample > 0 {
            self.retired_total += 1;
            let place = if self.retired.len() < self.verify_sample {
                Some(self.retired.len())
            } else {
                let pick = self.rng.u64(0..self.retired_total);
                usize::try_from(pick).ok().filter(|i| *i < self.verify_sample)
            };
            match place {
                Some(place) => {
                    let mut ledger = env.ledger;
                    if ledger.storage_capacity() > COMPACT_RACERS_OVER {
                        // A hot envelope's array would stay for the final QUERY.
                        ledger.compact();
                    }
                    if place == self.retired.len() {
                        self.retired.push(ledger);
                        None
                    } else {
                        Some(std::mem::replace(&mut self.retired[place], ledger).into_storage())
                    }
                }
                None => Some(env.ledger.into_storage()),
            }
        } else {
            Some(env.ledger.into_storage())
        };
        debug_assert!(self.retired.len() <= self.verify_sample);
        if let Some(storage) = storage.filter(|s| s.capacity() > 0 && s.capacity() <= SPARE_RACERS_MAX) {
            if self.spare_ledgers.len() < SPARE_LEDGERS_MAX {
                self.spare_ledgers.push(storage);
            }
        }
    }

    /// Ledgers of envelopes still being driven, for the final check.
    pub fn active_ledgers(&self) -> impl Iterator<Item = &Ledger> {
        self.envelopes.iter().flatten().map(|env| &env.ledger)
    }
}

/// Judges the answer to a repeated GRAB (`grab`) or OPEN by `user`, whose
/// OPEN already answered OK: a GRAB must answer already_grabbed with the
/// amount paid, an OPEN ok with it and its `order` (both even after expiry). busy and
/// unavailable are refusals, not answers about the money, and pass.
fn repeat_violation(
    ledger: &mut Ledger,
    grab: bool,
    user: u64,
    status: Status,
    amount_cents: u64,
    order: u32,
    cap_cents: u64,
) -> Option<String> {
    let expected = if grab { Status::AlreadyGrabbed } else { Status::Ok };
    let op = if grab { "GRAB" } else { "OPEN" };
    match status {
        Status::Busy | Status::Unavailable => None,
        _ if status == expected => ledger
            .record_repeat(user, amount_cents, order, cap_cents)
            .map(|v| format!("{v} (a repeated {op})")),
        _ => Some(format!(
            "envelope {}: user {user}, already paid, repeated its {op} and was answered {status}",
            ledger.envelope
        )),
    }
}

/// Whether paid `user` taps again: one in `retry_every`, picked by a hash of
/// the user, not its place among the racers, so that a group's first racer
/// (who is in every group) is no likelier than its last (whom small groups
/// never reach).
fn repeats(user: u64, retry_every: u64) -> bool {
    if retry_every == 0 {
        return false;
    }
    // splitmix64's finaliser: every bit of the user id moves every bit.
    let mut x = user.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    x.is_multiple_of(retry_every)
}

/// The envelope in `slot`, if it is still `envelope` (slots are reused).
fn active(envelopes: &mut [Option<Active>], slot: u32, envelope: u64) -> Option<&mut Active> {
    envelopes.get_mut(slot as usize)?.as_mut().filter(|env| env.ledger.envelope == envelope)
}

#[cfg(test)]
mod tests;
