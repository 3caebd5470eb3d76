//! One envelope's state, who holds what of it, and the invariants that tie its
//! numbers together.
//!
//! Who holds what is kept inside the envelope, next to its numbers, so a GRAB
//! or OPEN touches one envelope's memory and nothing else. Small envelopes
//! (most of a storm: about eight shares) find a user by scanning their claims
//! and reservations, a few cache lines; an envelope of more than
//! [`INLINE_SHARES_MAX`] shares keeps a hash index as well.

use std::collections::VecDeque;

use ahash::AHashMap;
use hongbao_protocol::body::{ClaimEntry, EnvelopeKind, EnvelopeState};

/// Largest share count whose holders are found by a scan instead of an index.
pub const INLINE_SHARES_MAX: u32 = 64;

/// What a user holds of one envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holding {
    /// A reservation until this time (Unix ms).
    Reserved { until_ms: u64 },
    /// A paid share: index into the envelope's claims.
    Paid { index: u32 },
}

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
    /// Index into `claims` of the best-luck share; the earliest of equal ones.
    pub best: Option<u32>,
    /// Paid shares in opening order, already in wire layout so that QUERY
    /// writes a page with one copy.
    pub claims: Vec<ClaimEntry>,
    /// Reservations in grab order with their deadlines. The reservation time is
    /// the same for all, so deadlines are in order and lapsed ones sit at the
    /// front. An entry whose user has since opened is stale and skipped.
    pub holds: VecDeque<(u64, u64)>,
    /// User to holding, for envelopes above [`INLINE_SHARES_MAX`] shares.
    index: Option<Box<AHashMap<u64, Holding>>>,
}

impl Envelope {
    /// A new, active envelope.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        sender: u64,
        total_cents: u64,
        count: u32,
        kind: EnvelopeKind,
        created_at_ms: u64,
        expires_at_ms: u64,
    ) -> Envelope {
        let inline = count <= INLINE_SHARES_MAX;
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
            claims: Vec::with_capacity(if inline { count as usize } else { 0 }),
            holds: VecDeque::new(),
            index: (!inline).then(Box::default),
        }
    }

    /// Shares paid.
    pub fn paid_count(&self) -> u32 {
        self.claims.len() as u32
    }

    /// Shares neither reserved nor paid.
    pub fn shares_free(&self) -> u32 {
        self.count - self.paid_count() - self.reserved
    }

    /// Shares not yet paid (reserved or free): the `n` of the split.
    pub fn shares_unpaid(&self) -> u32 {
        self.count - self.paid_count()
    }

    /// What `user` holds. Lapsed reservations must have been released first
    /// ([`Envelope::release_lapsed`]), so a reservation found here is live.
    pub fn holding(&self, user: u64) -> Option<Holding> {
        if let Some(index) = &self.index {
            return index.get(&user).copied();
        }
        if let Some(i) = self.claims.iter().position(|c| c.user.get() == user) {
            return Some(Holding::Paid { index: i as u32 });
        }
        self.holds
            .iter()
            .rev()
            .find(|(u, _)| *u == user)
            .map(|(_, until_ms)| Holding::Reserved { until_ms: *until_ms })
    }

    fn is_paid(&self, user: u64) -> bool {
        match &self.index {
            Some(index) => matches!(index.get(&user), Some(Holding::Paid { .. })),
            None => self.claims.iter().any(|c| c.user.get() == user),
        }
    }

    /// Reserves a share for `user` until `until_ms`.
    pub fn reserve(&mut self, user: u64, until_ms: u64) {
        assert!(self.shares_free() > 0, "envelope {}: reserve with no free share", self.id);
        self.holds.push_back((user, until_ms));
        self.reserved += 1;
        if let Some(index) = &mut self.index {
            index.insert(user, Holding::Reserved { until_ms });
        }
    }

    /// Pays `user`'s reservation `amount` cents; returns the claim's order.
    pub fn pay(&mut self, user: u64, amount: u64) -> u32 {
        assert!(self.reserved > 0 && amount <= self.remaining_cents);
        self.remaining_cents -= amount;
        self.paid_cents += amount;
        self.reserved -= 1;
        let index = self.paid_count();
        let order = index + 1;
        self.claims.push(ClaimEntry {
            user: zerocopy::little_endian::U64::new(user),
            amount_cents: zerocopy::little_endian::U64::new(amount),
            order: zerocopy::little_endian::U32::new(order),
            reserved: zerocopy::little_endian::U32::new(0),
        });
        if let Some(map) = &mut self.index {
            map.insert(user, Holding::Paid { index });
        }
        let beats_best = match self.best {
            Some(best) => amount > self.claims[best as usize].amount_cents.get(),
            None => true,
        };
        if beats_best {
            self.best = Some(index);
        }
        if self.paid_count() == self.count {
            self.state = EnvelopeState::Finished;
            self.holds.clear();
        }
        order
    }

    /// Returns lapsed reservations to the envelope. Holds are in deadline
    /// order, so this pops from the front and stops at the first live one.
    pub fn release_lapsed(&mut self, now_ms: u64) {
        while let Some(&(user, until_ms)) = self.holds.front() {
            if until_ms > now_ms {
                break;
            }
            self.holds.pop_front();
            if !self.is_paid(user) {
                self.reserved -= 1;
                if let Some(index) = &mut self.index {
                    index.remove(&user);
                }
            }
        }
    }

    /// Expires the envelope if its time has come: the unpaid remainder is
    /// refunded to the sender and every reservation released. Returns whether
    /// it expired now.
    pub fn expire_if_due(&mut self, now_ms: u64) -> bool {
        if self.state != EnvelopeState::Active || now_ms < self.expires_at_ms {
            return false;
        }
        while let Some((user, _)) = self.holds.pop_front() {
            if !self.is_paid(user) {
                self.reserved -= 1;
                if let Some(index) = &mut self.index {
                    index.remove(&user);
                }
            }
        }
        assert_eq!(self.reserved, 0, "envelope {}: reservations not in holds", self.id);
        self.refunded_cents = self.remaining_cents;
        self.remaining_cents = 0;
        self.state = EnvelopeState::Expired;
        true
    }

    /// Panics if the envelope's numbers disagree. O(1): called after every
    /// change.
    pub fn assert_invariants(&self, cap: u64) {
        assert_eq!(
            self.paid_cents + self.refunded_cents + self.remaining_cents,
            self.total_cents,
            "envelope {}: paid + refunded + remaining != total",
            self.id
        );
        assert!(self.paid_count() + self.reserved <= self.count, "envelope {}: over-subscribed", self.id);
        match self.state {
            EnvelopeState::Active => {
                assert_eq!(self.refunded_cents, 0);
                assert!(
                    self.remaining_cents >= u64::from(self.shares_unpaid()),
                    "envelope {}: < 1 cent a share left",
                    self.id
                );
                assert!(self.paid_count() < self.count);
            }
            EnvelopeState::Finished => {
                assert_eq!(self.paid_count(), self.count);
                assert_eq!(self.remaining_cents, 0);
                assert_eq!(self.reserved, 0);
            }
            EnvelopeState::Expired => {
                assert_eq!(self.remaining_cents, 0);
                assert_eq!(self.reserved, 0);
            }
        }
        if let Some(last) = self.claims.last() {
            let amount = last.amount_cents.get();
            assert!(amount >= 1 && amount <= cap, "envelope {}: share {amount} out of [1, {cap}]", self.id);
            assert_eq!(last.order.get(), self.paid_count());
        }
    }

    /// Checks every claim and reservation: one share per user, the index (if
    /// any) agrees, the reservation count is right. O(claims): for tests and
    /// checks, not per request.
    pub fn assert_holdings(&self) {
        let mut users: Vec<u64> = self.claims.iter().map(|c| c.user.get()).collect();
        users.sort_unstable();
        let paid = users.len();
        users.dedup();
        assert_eq!(users.len(), paid, "envelope {}: a user holds two shares", self.id);
        let live: Vec<u64> = self.holds.iter().map(|(u, _)| *u).filter(|u| !self.is_paid(*u)).collect();
        assert_eq!(live.len(), self.reserved as usize, "envelope {}: reservation count", self.id);
        if let Some(index) = &self.index {
            assert_eq!(index.len(), paid + live.len(), "envelope {}: index size", self.id);
            for (i, claim) in self.claims.iter().enumerate() {
                assert_eq!(index.get(&claim.user.get()), Some(&Holding::Paid { index: i as u32 }));
            }
        }
        for user in live {
            assert!(matches!(self.holding(user), Some(Holding::Reserved { .. })));
        }
    }
}
