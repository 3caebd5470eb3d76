//! One envelope's state, who holds what of it, and the invariants that tie its
//! numbers together.
//!
//! Who holds what is kept inside the envelope, next to its numbers, so a GRAB
//! or OPEN touches one envelope's memory and nothing else (see `shares.rs`).
//!
//! Every request first brings its envelope up to date: expired if its time has
//! come, lapsed reservations returned. Both checks are one comparison each in
//! the common case that nothing is due, and the work itself is out of line.

use hongbao_protocol::body::{ClaimEntry, EnvelopeKind, EnvelopeState};

use super::shares::{Holding, Shares};

/// An envelope as its owning shard holds it.
#[derive(Debug)]
pub struct Envelope {
    /// Wire id (shard and key).
    pub id: u64,
    /// Who sent it.
    pub sender: u64,
    /// Cents put in.
    pub total_cents: u64,
    /// Shares.
    pub count: u32,
    /// Random or fixed split.
    pub kind: EnvelopeKind,
    /// Creation time, Unix ms.
    pub created_at_ms: u64,
    /// Expiry time, Unix ms.
    pub expires_at_ms: u64,
    /// Neither paid nor refunded.
    pub remaining_cents: u64,
    /// Sum of paid shares.
    pub paid_cents: u64,
    /// Returned to the sender at expiry.
    pub refunded_cents: u64,
    /// Reservations held now.
    pub reserved: u32,
    /// Active, finished or expired.
    pub state: EnvelopeState,
    /// Index into [`Envelope::claims`] of the best-luck share; the earliest of
    /// equal ones.
    pub best: Option<u32>,
    /// Shares paid.
    paid: u32,
    /// The claims paid and the reservations held, and who holds which.
    shares: Shares,
    /// No reservation lapses before this time (Unix ms); `u64::MAX` when none
    /// is held. A lower bound: it may be earlier than the earliest deadline.
    lapse_ms: u64,
    /// The number of the log record of its CREATE or its last OPEN (0: none
    /// since start-up, so all of it is durable). An answer that shows this
    /// envelope's state goes out only once that record is durable. (Expiry
    /// and eviction do not count: they follow from the clock and these.)
    pub changed_seq: u64,
}

impl Envelope {
    /// A new, active envelope, with `shares` made for its `count`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        sender: u64,
        total_cents: u64,
        count: u32,
        kind: EnvelopeKind,
        created_at_ms: u64,
        expires_at_ms: u64,
        shares: Shares,
    ) -> Envelope {
        debug_assert!(shares.claims(0).is_empty());
        Envelope {
            id,
            sender,
            total_cents,
            count,
            kind,
            created_at_ms,
            expires_at_ms,
            remaining_cents: total_cents,
            paid_cents: 0,
            refunded_cents: 0,
            reserved: 0,
            state: EnvelopeState::Active,
            best: None,
            paid: 0,
            shares,
            lapse_ms: u64::MAX,
            changed_seq: 0,
        }
    }

    /// Its shares' storage, once it is evicted.
    pub fn into_shares(self) -> Shares {
        self.shares
    }

    /// Shares paid.
    #[inline(always)]
    pub fn paid_count(&self) -> u32 {
        self.paid
    }

    /// Paid shares in opening order, in wire layout so that QUERY writes a
    /// page with one copy.
    #[inline(always)]
    pub fn claims(&self) -> &[ClaimEntry] {
        self.shares.claims(self.paid)
    }

    /// Shares neither reserved nor paid.
    #[inline(always)]
    pub fn shares_free(&self) -> u32 {
        self.count - self.paid_count() - self.reserved
    }

    /// Shares not yet paid (reserved or free): the `n` of the split.
    #[inline(always)]
    pub fn shares_unpaid(&self) -> u32 {
        self.count - self.paid_count()
    }

    /// What `user` holds. Lapsed reservations must have been released first
    /// ([`Envelope::release_lapsed`]), so a reservation found here is live.
    #[inline(always)]
    pub fn holding(&self, user: u64) -> Option<Holding> {
        self.shares.holding(user, self.paid)
    }

    /// Reserves a share for `user`, who holds nothing of it, until `until_ms`.
    #[inline(always)]
    pub fn reserve(&mut self, user: u64, until_ms: u64) {
        assert!(self.shares_free() > 0, "envelope {}: reserve with no free share", self.id);
        self.shares.reserve(user, until_ms, self.paid, self.reserved);
        self.reserved += 1;
        self.lapse_ms = self.lapse_ms.min(until_ms);
    }

    /// Pays `user`'s reservation `amount` cents; returns the claim's order.
    #[inline(always)]
    pub fn pay(&mut self, user: u64, amount: u64) -> u32 {
        assert!(self.reserved > 0 && amount <= self.remaining_cents);
        let index = self.paid;
        self.shares.pay(user, amount, index, self.reserved);
        self.remaining_cents -= amount;
        self.paid_cents += amount;
        self.reserved -= 1;
        self.paid += 1;
        let order = self.paid;
        let beats_best = match self.best {
            Some(best) => amount > self.claims()[best as usize].amount_cents.get(),
            None => true,
        };
        if beats_best {
            self.best = Some(index);
        }
        if self.reserved == 0 && matches!(self.shares, Shares::Inline(_)) {
            // Nothing is left to lapse (an indexed envelope's queue may still
            // hold stale entries, which its release pops).
            self.lapse_ms = u64::MAX;
        }
        if order == self.count {
            self.state = EnvelopeState::Finished;
            self.shares.finish();
            self.lapse_ms = u64::MAX;
        }
        order
    }

    /// Returns lapsed reservations to the envelope. Costs one comparison
    /// unless the earliest deadline has passed.
    #[inline(always)]
    pub fn release_lapsed(&mut self, now_ms: u64) {
        if now_ms >= self.lapse_ms {
            self.release_lapsed_now(now_ms);
        }
    }

    #[cold]
    #[inline(never)]
    fn release_lapsed_now(&mut self, now_ms: u64) {
        let (released, lapse_ms) = self.shares.release_lapsed(now_ms, self.paid, self.reserved);
        assert!(released <= self.reserved, "envelope {}: released {released} reservations", self.id);
        assert!(lapse_ms > now_ms, "envelope {}: a lapsed reservation was kept", self.id);
        self.reserved -= released;
        self.lapse_ms = lapse_ms;
    }

    /// Expires the envelope if its time has come: the unpaid remainder is
    /// refunded to the sender and every reservation released. Returns whether
    /// it expired now.
    #[inline(always)]
    pub fn expire_if_due(&mut self, now_ms: u64) -> bool {
        if self.state != EnvelopeState::Active || now_ms < self.expires_at_ms {
            return false;
        }
        self.expire();
        true
    }

    #[cold]
    #[inline(never)]
    fn expire(&mut self) {
        self.shares.release_all(self.paid);
        self.reserved = 0;
        self.lapse_ms = u64::MAX;
        self.refunded_cents = self.remaining_cents;
        self.remaining_cents = 0;
        self.state = EnvelopeState::Expired;
    }

    /// Panics if the envelope's numbers disagree. O(1) and branch-light:
    /// called after every change. Every check is evaluated and the results
    /// combined, so the common case (all hold) takes one branch; the message
    /// naming the broken rule is worked out only on the way to the panic.
    #[inline(always)]
    pub fn assert_invariants(&self, cap: u64) {
        if !self.invariants_hold(cap) {
            self.invariant_broken(cap);
        }
    }

    /// Whether every rule of [`Envelope::assert_invariants`] holds. The
    /// sums wrap so that broken numbers report instead of overflowing here.
    #[inline(always)]
    fn invariants_hold(&self, cap: u64) -> bool {
        let paid = self.paid_count();
        let sums = self.paid_cents.wrapping_add(self.refunded_cents).wrapping_add(self.remaining_cents)
            == self.total_cents;
        let subscribed = u64::from(paid) + u64::from(self.reserved) <= u64::from(self.count);
        let by_state = match self.state {
            EnvelopeState::Active => {
                (self.refunded_cents == 0)
                    & (paid < self.count)
                    & (self.remaining_cents >= u64::from(self.count.wrapping_sub(paid)))
            }
            EnvelopeState::Finished => {
                (paid == self.count) & (self.remaining_cents == 0) & (self.reserved == 0)
            }
            EnvelopeState::Expired => (self.remaining_cents == 0) & (self.reserved == 0),
        };
        let last = match self.claims().last() {
            Some(last) => {
                let amount = last.amount_cents.get();
                (amount >= 1) & (amount <= cap) & (last.order.get() == paid)
            }
            None => true,
        };
        sums & subscribed & by_state & last
    }

    /// Panics with the first broken rule, in the order they are stated.
    #[cold]
    #[inline(never)]
    fn invariant_broken(&self, cap: u64) -> ! {
        assert_eq!(
            self.paid_cents.wrapping_add(self.refunded_cents).wrapping_add(self.remaining_cents),
            self.total_cents,
            "envelope {}: paid + refunded + remaining != total",
            self.id
        );
        let paid = self.paid_count();
        assert!(
            u64::from(paid) + u64::from(self.reserved) <= u64::from(self.count),
            "envelope {}: over-subscribed",
            self.id
        );
        match self.state {
            EnvelopeState::Active => {
                assert_eq!(self.refunded_cents, 0, "envelope {}: refunded while active", self.id);
                assert!(paid < self.count, "envelope {}: active with every share paid", self.id);
                assert!(
                    self.remaining_cents >= u64::from(self.count - paid),
                    "envelope {}: < 1 cent a share left",
                    self.id
                );
            }
            EnvelopeState::Finished => {
                assert_eq!(paid, self.count, "envelope {}: finished with shares unpaid", self.id);
                assert_eq!(self.remaining_cents, 0, "envelope {}: finished with cents left", self.id);
                assert_eq!(self.reserved, 0, "envelope {}: finished with reservations", self.id);
            }
            EnvelopeState::Expired => {
                assert_eq!(self.remaining_cents, 0, "envelope {}: expired with cents left", self.id);
                assert_eq!(self.reserved, 0, "envelope {}: expired with reservations", self.id);
            }
        }
        if let Some(last) = self.claims().last() {
            let amount = last.amount_cents.get();
            assert!(amount >= 1 && amount <= cap, "envelope {}: share {amount} out of [1, {cap}]", self.id);
            assert_eq!(last.order.get(), paid, "envelope {}: the last claim's order", self.id);
        }
        unreachable!("envelope {}: invariants_hold and invariant_broken disagree", self.id);
    }

    /// Checks every claim and reservation: one share per user, every holder
    /// found, the counts right. O(shares): for tests and checks, not per
    /// request.
    pub fn assert_holdings(&self) {
        self.shares.assert_holdings(self.id, self.paid, self.reserved, self.lapse_ms);
    }
}
