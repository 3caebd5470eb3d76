//! The money checks the load generator runs while it drives the server.
//!
//! Each envelope the generator created has a [`Ledger`] of what OPEN answered.
//! A violation is anything that cannot happen if the server keeps the money
//! rules: a user paid two different amounts (or twice) for one envelope, a
//! repeated GRAB or OPEN of a paid user that does not name the same share, more
//! paid out than put in, a share outside [1, cap], a finished envelope whose
//! shares do not add up to its total, or a QUERY that disagrees with the
//! acknowledged opens either way (one lost or changed, or one the server holds
//! that no answer acknowledged). QUERYs sent while an envelope is raced for
//! are judged on what no answer in flight can change ([`Ledger::check_page`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hongbao_client::{Claim, EnvelopeReport};

use crate::violations::Violations;

/// What the generator knows of one envelope's payouts.
#[derive(Clone, Debug, PartialEq)]
pub struct Ledger {
    /// Envelope id.
    pub envelope: u64,
    /// Cents put in.
    pub total_cents: u64,
    /// Shares.
    pub count: u32,
    /// The racers are users `first_user..first_user + racers`: what OPEN
    /// acknowledged to each, by racer. An array, not a map: one indexed
    /// load per answer whatever the envelope's size.
    first_user: u64,
    paid: Vec<Share>,
    /// After [`Ledger::compact`]: the (user, share) acknowledged, `paid` empty.
    settled: Vec<(u64, Share)>,
    paid_count: u32,
    paid_cents: u64,
    /// When the CREATE was answered: the server created the envelope before,
    /// so its expiry is at most `--expires-in` after this.
    created: Instant,
}

/// What the answers told one racer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Share {
    /// The amount; 0: nothing yet (a share is at least a cent).
    pub amount_cents: u64,
    /// Its 1-based opening order; 0: not told (a GRAB names none).
    pub order: u32,
}

impl Share {
    /// What a claim QUERY listed for the same user of envelope `id` says
    /// against this, if anything: another amount, or another order where
    /// one was told.
    fn contradicted_by(&self, id: u64, claim: &Claim) -> Option<String> {
        let user = claim.user;
        if claim.amount_cents != self.amount_cents {
            return Some(format!(
                "envelope {id}: user {user} was told {} cents, QUERY says {}",
                self.amount_cents, claim.amount_cents
            ));
        }
        if self.order != 0 && claim.order != self.order {
            return Some(format!(
                "envelope {id}: user {user} was told order {}, QUERY says {}",
                self.order, claim.order
            ));
        }
        None
    }
}

impl Ledger {
    /// A ledger for a new envelope raced for by `racers` users numbered from
    /// `first_user`.
    pub fn new(envelope: u64, total_cents: u64, count: u32, first_user: u64, racers: u32) -> Ledger {
        Ledger::new_in(envelope, total_cents, count, first_user, racers, Vec::new())
    }

    /// [`Ledger::new`] on the storage of a retired ledger (from
    /// [`Ledger::into_storage`]), so that a storm's steady state does not allocate and
    /// free an array per envelope.
    pub fn new_in(
        envelope: u64,
        total_cents: u64,
        count: u32,
        first_user: u64,
        racers: u32,
        mut storage: Vec<Share>,
    ) -> Ledger {
        storage.clear();
        storage.resize(racers as usize, Share::default());
        Ledger {
            envelope,
            total_cents,
            count,
            first_user,
            paid: storage,
            settled: Vec::new(),
            paid_count: 0,
            paid_cents: 0,
            created: Instant::now(),
        }
    }

    /// Whether the envelope, created to expire in `expires_in`, has
    /// certainly expired by `now`, and so may have been evicted since.
    pub fn has_expired(&self, expires_in: Duration, now: Instant) -> bool {
        now >= self.created + expires_in
    }

    /// Sum of acknowledged shares.
    pub fn paid_cents(&self) -> u64 {
        self.paid_cents
    }

    /// Acknowledged shares.
    pub fn paid_count(&self) -> usize {
        self.paid_count as usize
    }

    /// Every (user, share) acknowledged.
    fn payouts(&self) -> impl Iterator<Item = (u64, Share)> + '_ {
        let first = self.first_user;
        let racing = self
            .paid
            .iter()
            .enumerate()
            .filter(|(_, share)| share.amount_cents > 0)
            .map(move |(i, share)| (first + i as u64, *share));
        self.settled.iter().copied().chain(racing)
    }

    /// Keeps only what was paid, for a ledger that is done racing and waits
    /// for the final QUERY: a hot envelope's array of 100,000 racers becomes
    /// its paid shares. No open is recorded after this.
    pub fn compact(&mut self) {
        let mut settled = Vec::with_capacity(self.paid_count as usize);
        settled.extend(self.payouts());
        self.settled = settled;
        self.paid = Vec::new();
    }

    /// Users who race for the envelope (0 once compacted).
    pub fn racers(&self) -> usize {
        self.paid.len()
    }

    /// Racers the array has room for: what it holds on to, if reused storage.
    pub fn storage_capacity(&self) -> usize {
        self.paid.capacity()
    }

    /// The racers' array, for [`Ledger::new_in`], of a ledger not kept
    /// (empty once compacted).
    pub fn into_storage(self) -> Vec<Share> {
        self.paid
    }

    /// Records an OPEN that answered OK; returns a violation if it breaks a rule.
    ///
    /// An amount outside [1, cap] is a violation, but a non-zero one is still
    /// recorded as what the server acknowledged, so that its repeats and the
    /// final QUERY are judged against it instead of calling it "never
    /// acknowledged"; the total and count checks still run on it. `order` is
    /// the opening order OPEN named (0 for a GRAB, which names none): it
    /// must be within [1, count], and is kept to judge the repeats and
    /// QUERY by.
    #[inline]
    pub fn record_open(
        &mut self,
        user: u64,
        amount_cents: u64,
        order: u32,
        cap_cents: u64,
    ) -> Option<String> {
        // Nearly every answer breaks no rule: recorded here in a few
        // instructions, with every other case (each one a violation or a
        // repeat) judged by the full path below.
        if amount_cents != 0 && amount_cents <= cap_cents && order <= self.count {
            let index = user.wrapping_sub(self.first_user);
            if let Some(slot) = usize::try_from(index).ok().and_then(|i| self.paid.get_mut(i)) {
                match *slot {
                    Share { amount_cents: 0, .. }
                        if self.paid_count < self.count
                            && self.paid_cents.saturating_add(amount_cents) <= self.total_cents =>
                    {
                        *slot = Share { amount_cents, order };
                        self.paid_count += 1;
                        self.paid_cents += amount_cents;
                        return None;
                    }
                    before if before == (Share { amount_cents, order }) => return None,
                    _ => {}
                }
            }
        }
        self.record_open_judged(user, amount_cents, order, cap_cents)
    }

    /// [`Self::record_open`] for an answer that may break a rule: every
    /// check, with its message.
    #[cold]
    #[inline(never)]
    fn record_open_judged(
        &mut self,
        user: u64,
        amount_cents: u64,
        order: u32,
        cap_cents: u64,
    ) -> Option<String> {
        let out_of_range = (amount_cents == 0 || amount_cents > cap_cents).then(|| {
            format!(
                "envelope {}: user {user} paid {amount_cents} cents, outside [1, {cap_cents}]",
                self.envelope
            )
        });
        let order_out_of_range = (order > self.count).then(|| {
            format!("envelope {}: user {user} told order {order}, outside [1, {}]", self.envelope, self.count)
        });
        if amount_cents == 0 {
            // Nothing to record: 0 means "not paid" in the ledger.
            return out_of_range;
        }
        let share = Share { amount_cents, order };
        let Some(slot) = user
            .checked_sub(self.first_user)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.paid.get_mut(i))
        else {
            return Some(format!(
                "envelope {}: user {user}, who never raced for it, was paid",
                self.envelope
            ));
        };
        let before = *slot;
        if before.amount_cents != 0 {
            if before.amount_cents != amount_cents {
                return Some(format!(
                    "envelope {}: user {user} paid twice ({} then {amount_cents} cents)",
                    self.envelope, before.amount_cents
                ));
            }
            if before.order != order {
                return Some(format!(
                    "envelope {}: user {user} told order {} then {order}",
                    self.envelope, before.order
                ));
            }
            return None;
        }
        *slot = share;
        let was_within_total = self.paid_cents <= self.total_cents;
        self.paid_count += 1;
        self.paid_cents = self.paid_cents.saturating_add(amount_cents);
        let mut broken: Vec<String> = out_of_range.into_iter().chain(order_out_of_range).collect();
        if was_within_total && self.paid_cents > self.total_cents {
            // Reported when the total is first overrun, not again by every
            // later share of the envelope.
            broken.push(format!(
                "envelope {}: paid {} cents out of a total of {}",
                self.envelope, self.paid_cents, self.total_cents
            ));
        }
        if self.paid_count > self.count {
            broken.push(format!(
                "envelope {}: {} shares paid of {}",
                self.envelope, self.paid_count, self.count
            ));
        }
        (!broken.is_empty()).then(|| broken.join("; "))
    }

    /// What OPEN acknowledged to `user`, if anything.
    fn told(&self, user: u64) -> Option<Share> {
        let racing = user
            .checked_sub(self.first_user)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.paid.get(i))
            .copied()
            .filter(|share| share.amount_cents > 0);
        racing.or_else(|| self.settled.iter().find(|(u, _)| *u == user).map(|(_, share)| *share))
    }

    /// Checks the answer to a repeated GRAB or OPEN by `user`, who was paid
    /// before: it must name the same amount, and an OPEN the same order
    /// (`order`; 0 for a GRAB, which names none). Returns a violation if not.
    pub fn record_repeat(&self, user: u64, amount_cents: u64, order: u32, cap_cents: u64) -> Option<String> {
        let id = self.envelope;
        match self.told(user) {
            Some(paid) if paid.amount_cents != amount_cents => Some(format!(
                "envelope {id}: user {user} paid twice ({} then {amount_cents} cents)",
                paid.amount_cents
            )),
            Some(paid) if order != 0 && paid.order != 0 && paid.order != order => {
                Some(format!("envelope {id}: user {user} told order {} then {order}", paid.order))
            }
            Some(_) => None,
            None if amount_cents == 0 || amount_cents > cap_cents => Some(format!(
                "envelope {id}: user {user} paid {amount_cents} cents, outside [1, {cap_cents}]"
            )),
            None => Some(format!(
                "envelope {id}: user {user} paid {amount_cents} cents, never acknowledged before"
            )),
        }
    }

    /// Whether `user` is one of the envelope's racers.
    fn races(&self, user: u64) -> bool {
        let racing = user.checked_sub(self.first_user).is_some_and(|i| i < self.paid.len() as u64);
        racing || self.settled.iter().any(|(u, _)| *u == user)
    }

    /// Compares one page of a QUERY answered while the envelope is still
    /// raced for with what the answers said so far, judging only what no
    /// answer still in flight can change: every listed user is a racer,
    /// listed once, and paid what its OPEN was told. A listed claim not yet
    /// acknowledged may be an OPEN whose answer is on its way, and passes.
    /// Each mismatch is one violation. Allocates only to say one.
    /// `claims` walks the page from its start each time it is called.
    pub fn check_page<I: Iterator<Item = Claim>>(&self, claims: impl Fn() -> I, violations: &mut Violations) {
        let id = self.envelope;
        for (i, claim) in claims().enumerate() {
            let user = claim.user;
            if claims().take(i).any(|earlier| earlier.user == user) {
                violations.push(format!("envelope {id}: QUERY lists user {user} twice"));
            }
            if !self.races(user) {
                violations.push(format!(
                    "envelope {id}: QUERY lists a share paid to user {user}, who never raced for it"
                ));
                continue;
            }
            if let Some(told) = self.told(user) {
                if let Some(v) = told.contradicted_by(id, &claim) {
                    violations.push(v);
                }
            }
        }
    }

    /// Checks a fully paid envelope adds up exactly.
    pub fn check_complete(&self) -> Option<String> {
        if self.paid_count == self.count && self.paid_cents != self.total_cents {
            return Some(format!(
                "envelope {}: all {} shares paid but they sum to {} cents, not {}",
                self.envelope, self.count, self.paid_cents, self.total_cents
            ));
        }
        None
    }

    /// Compares the server's QUERY (every claim) with the acknowledged opens.
    pub fn check_report(&self, report: &EnvelopeReport) -> Vec<String> {
        let mut violations = Vec::new();
        let s = &report.summary;
        let id = self.envelope;
        if s.total_cents != self.total_cents || s.count != self.count {
            violations
                .push(format!("envelope {id}: QUERY says {} cents in {} shares", s.total_cents, s.count));
        }
        if s.paid_cents + s.refunded_cents + s.remaining_cents != s.total_cents {
            violations.push(format!("envelope {id}: QUERY paid + refunded + remaining != total"));
        }
        let listed: u64 = report.claims.iter().map(|c| c.amount_cents).sum();
        if listed != s.paid_cents || report.claims.len() as u32 != s.paid_count {
            violations.push(format!("envelope {id}: QUERY's claims do not add up to its paid figures"));
        }
        let mut seen = HashMap::with_capacity(report.claims.len());
        for claim in &report.claims {
            if seen.insert(claim.user, *claim).is_some() {
                violations.push(format!("envelope {id}: QUERY lists user {} twice", claim.user));
            }
        }
        for (user, told) in self.payouts() {
            match seen.get(&user) {
                Some(listed) => violations.extend(told.contradicted_by(id, listed)),
                None => {
                    violations.push(format!("envelope {id}: acknowledged open of user {user} is missing"))
                }
            }
        }
        // And the other way: every answer is in by now, so the server holds
        // no payment it did not acknowledge (a claim whose OPEN was answered
        // with a failure, or paid to someone who never opened).
        if report.claims.len() != self.paid_count() || s.paid_cents != self.paid_cents {
            violations.push(format!(
                "envelope {id}: QUERY says {} shares paid ({} cents), the answers said {} ({} cents)",
                report.claims.len(),
                s.paid_cents,
                self.paid_count(),
                self.paid_cents
            ));
        }
        let told: HashMap<u64, Share> = self.payouts().collect();
        if let Some(stranger) = report.claims.iter().find(|c| !told.contains_key(&c.user)) {
            violations.push(format!(
                "envelope {id}: QUERY lists a share paid to user {}, which no answer acknowledged",
                stranger.user
            ));
        }
        violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hongbao_client::{Claim, EnvelopeId, EnvelopeKind, EnvelopeState, EnvelopeSummary};

    fn report(claims: &[(u64, u64)], total: u64, count: u32) -> EnvelopeReport {
        let paid: u64 = claims.iter().map(|c| c.1).sum();
        EnvelopeReport {
            summary: EnvelopeSummary {
                envelope: EnvelopeId(1),
                sender: 1,
                total_cents: total,
                count,
                paid_count: claims.len() as u32,
                paid_cents: paid,
                remaining_cents: total - paid,
                refunded_cents: 0,
                reserved_count: 0,
                state: EnvelopeState::Active,
                kind: EnvelopeKind::Random,
                created_at_ms: 0,
                expires_at_ms: 0,
                best_user: 0,
                best_amount_cents: 0,
            },
            claims: claims
                .iter()
                .enumerate()
                .map(|(i, (user, amount))| Claim { user: *user, amount_cents: *amount, order: i as u32 + 1 })
                .collect(),
        }
    }

    #[test]
    fn a_clean_envelope_has_no_violation() {
        let mut ledger = Ledger::new(1, 100, 3, 7, 4);
        assert_eq!(ledger.record_open(7, 30, 1, 100), None);
        assert_eq!(ledger.record_open(7, 30, 1, 100), None, "the same answer again is idempotence");
        assert_eq!(ledger.record_open(8, 50, 2, 100), None);
        assert_eq!(ledger.record_open(9, 20, 3, 100), None);
        assert_eq!(ledger.check_complete(), None);
        assert_eq!(ledger.record_repeat(8, 50, 2, 100), None);
        assert_eq!(ledger.record_repeat(8, 50, 0, 100), None, "a GRAB names no order");
        assert!(ledger.check_report(&report(&[(7, 30), (8, 50), (9, 20)], 100, 3)).is_empty());
    }

    #[test]
    fn an_order_told_must_stay_the_same() {
        let mut ledger = Ledger::new(1, 100, 3, 7, 4);
        assert_eq!(ledger.record_open(7, 30, 1, 100), None);
        assert_eq!(ledger.record_open(8, 50, 2, 100), None);
        let said = ledger.record_open(8, 50, 3, 100).unwrap();
        assert!(said.contains("user 8 told order 2 then 3"), "{said}");
        let said = ledger.record_repeat(8, 50, 1, 100).unwrap();
        assert!(said.contains("user 8 told order 2 then 1"), "{said}");
        assert!(ledger.record_open(9, 20, 4, 100).unwrap().contains("order 4, outside [1, 3]"));
        // QUERY lists its claims in opening order: 7 first, 8 second.
        let swapped = report(&[(8, 50), (7, 30), (9, 20)], 100, 3);
        let found = ledger.check_report(&swapped);
        assert!(found.iter().any(|v| v.contains("user 8 was told order 2, QUERY says 1")), "{found:?}");
        let mut mid_race = Violations::default();
        ledger.check_page(|| swapped.claims.iter().copied(), &mut mid_race);
        // 7 and 8 in each other's place, and 9 not where it was told (4, out of range).
        assert_eq!(mid_race.count(), 3, "{:?}", mid_race.messages());
    }

    #[test]
    fn every_rule_break_is_caught() {
        let mut ledger = Ledger::new(1, 100, 3, 7, 4);
        assert!(ledger.record_open(7, 0, 0, 100).is_some(), "zero share");
        assert_eq!(ledger.record_open(7, 60, 0, 100), None, "a zero share records nothing");
        assert!(ledger.record_open(7, 61, 0, 100).is_some(), "paid twice");
        assert!(ledger.record_open(8, 50, 0, 100).is_some(), "more than the total");

        let mut short = Ledger::new(2, 100, 2, 1, 2);
        short.record_open(1, 10, 0, 100);
        short.record_open(2, 10, 0, 100);
        assert!(short.check_complete().is_some(), "complete but short");

        let mut told = Ledger::new(1, 100, 3, 7, 4);
        told.record_open(7, 30, 0, 100);
        let says = |ledger: &Ledger, claims: &[(u64, u64)], what: &str| {
            let found = ledger.check_report(&report(claims, 100, 3));
            assert!(found.iter().any(|v| v.contains(what)), "{claims:?}: no {what:?} in {found:?}");
        };
        says(&told, &[(7, 31)], "was told 30 cents, QUERY says 31");
        says(&told, &[], "acknowledged open of user 7 is missing");
        says(&told, &[(7, 30), (7, 30)], "lists user 7 twice");
        // The server holds a payment no answer acknowledged: to a racer whose
        // OPEN failed, or to a stranger.
        says(
            &told,
            &[(7, 30), (8, 20)],
            "QUERY says 2 shares paid (50 cents), the answers said 1 (30 cents)",
        );
        says(&told, &[(7, 30), (8, 20)], "share paid to user 8, which no answer acknowledged");
        says(&told, &[(7, 30), (99, 20)], "share paid to user 99");

        // Repeats of a paid user must name the same share.
        assert_eq!(told.record_repeat(7, 30, 0, 100), None);
        assert!(
            told.record_repeat(7, 0, 0, 100).unwrap().contains("paid twice (30 then 0"),
            "a reservation instead"
        );
        assert!(told.record_repeat(7, 45, 0, 100).unwrap().contains("paid twice (30 then 45"));
        assert!(told.record_repeat(8, 45, 0, 100).unwrap().contains("never acknowledged"));
        assert!(told.record_repeat(8, 0, 0, 100).unwrap().contains("outside [1, 100]"));

        let mut done = Ledger::new(4, 100, 3, 7, 4);
        assert_eq!(done.record_open(8, 30, 0, 100), None);
        assert_eq!(done.record_open(10, 70, 0, 100), None);
        done.compact();
        assert_eq!((done.racers(), done.paid_count(), done.paid_cents()), (0, 2, 100));
        assert!(
            done.check_report(&report(&[(8, 30), (10, 70)], 100, 3)).is_empty(),
            "compacted, same payouts"
        );
        says(&done, &[(8, 30)], "acknowledged open of user 10 is missing");
        assert_eq!(done.record_repeat(10, 70, 0, 100), None, "a compacted ledger still knows its payouts");
        says(&done, &[(8, 30), (10, 69), (9, 1)], "share paid to user 9");

        let mut used = Ledger::new(5, 100, 3, 7, 4);
        assert_eq!(used.record_open(9, 40, 0, 100), None);
        let mut reborn = Ledger::new_in(6, 100, 3, 20, 3, used.into_storage());
        assert_eq!((reborn.racers(), reborn.paid_count(), reborn.paid_cents()), (3, 0, 0));
        assert_eq!(reborn.record_open(22, 30, 0, 100), None, "recycled storage starts with nothing paid");
        assert!(reborn.record_open(23, 10, 0, 100).is_some(), "and holds exactly this envelope's racers");
        assert!(reborn.check_report(&report(&[(22, 30)], 100, 3)).is_empty());

        // A share above the cap is reported once; later checks judge
        // against what the server said, and do not call it unacknowledged.
        let mut above = Ledger::new(3, 1_000, 3, 7, 4);
        assert!(above.record_open(7, 101, 0, 100).unwrap().contains("101 cents, outside [1, 100]"));
        assert_eq!(above.record_open(7, 101, 0, 100), None, "the same answer again");
        assert_eq!(above.record_repeat(7, 101, 0, 100), None, "its repeat names the same share");
        assert!(above.check_report(&report(&[(7, 101)], 1_000, 3)).is_empty());
        assert_eq!((above.paid_count(), above.paid_cents()), (1, 101));
        // Out of range and over the total at once: both are said.
        let mut both = Ledger::new(3, 100, 1, 7, 4);
        let said = both.record_open(7, 150, 0, 100).unwrap();
        assert!(
            said.contains("outside [1, 100]") && said.contains("paid 150 cents out of a total of 100"),
            "{said}"
        );
        assert!(both.record_open(8, 1, 0, 100).unwrap().contains("2 shares paid of 1"), "an extra share");
        assert!(
            !both.record_open(9, 1, 0, 100).unwrap().contains("out of a total"),
            "the overrun was said once"
        );

        let mut stranger = Ledger::new(3, 100, 3, 7, 4);
        assert!(stranger.record_open(6, 10, 0, 100).is_some(), "a user below the racers");
        assert!(stranger.record_open(11, 10, 0, 100).is_some(), "a user past the racers");
        assert_eq!(stranger.record_open(10, 10, 0, 100), None, "the last racer");
        assert_eq!(stranger.paid_count(), 1);
    }

    #[test]
    fn a_page_read_mid_race_is_judged_only_on_what_was_acknowledged() {
        let mut ledger = Ledger::new(1, 100, 3, 7, 4);
        assert_eq!(ledger.record_open(7, 30, 0, 100), None);
        let check = |claims: &[(u64, u64)]| {
            let mut found = Violations::default();
            let claims = report(claims, 100, 3).claims;
            ledger.check_page(|| claims.iter().copied(), &mut found);
            found
        };
        assert!(check(&[(7, 30), (8, 20)]).is_empty(), "user 8's OPEN answer may be on its way");
        assert!(check(&[(7, 31)]).messages()[0].contains("was told 30 cents, QUERY says 31"));
        assert!(check(&[(8, 20), (8, 20)]).messages()[0].contains("lists user 8 twice"));
        assert!(check(&[(7, 30), (11, 20)]).messages()[0].contains("user 11, who never raced"));
        assert_eq!(check(&[(8, 1), (8, 1), (6, 2), (7, 3)]).count(), 3, "one violation per mismatch");
    }

    /// The quick path of `record_open` must say and record exactly what the
    /// judged path does, for every input: random answers to small ledgers,
    /// near their totals, counts, cap and racer bounds, in both on clones.
    #[test]
    fn record_open_says_what_the_judged_path_says() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut quick_paths = 0;
        for _ in 0..2_000 {
            let (total, count, first, racers) = (rng.u64(1..60), rng.u32(1..6), rng.u64(0..4), rng.u32(0..8));
            let mut quick = Ledger::new(1, total, count, first, racers);
            let mut judged = quick.clone();
            for _ in 0..12 {
                let user = rng.u64(0..first + u64::from(racers) + 2);
                let amount = match rng.u8(0..4) {
                    0 => 0,
                    1 => rng.u64(1..=total),
                    2 => rng.u64(1..25),
                    _ => rng.u64(20..40),
                };
                let cap = rng.u64(1..30);
                let order =
                    if rng.u8(0..8) == 0 { rng.u32(count + 1..count + 3) } else { rng.u32(0..=count) };
                let (paid_before, told) = (quick.paid_count, quick.record_open(user, amount, order, cap));
                quick_paths += usize::from(told.is_none() && quick.paid_count > paid_before);
                let judged_told = judged.record_open_judged(user, amount, order, cap);
                assert_eq!(told, judged_told, "user {user} amount {amount} order {order}");
                assert_eq!(quick, judged, "user {user} amount {amount} cap {cap}");
            }
        }
        assert!(quick_paths > 1_000, "the quick path recorded only {quick_paths} shares");
    }
}
