//! One envelope's state and the invariants that tie its numbers together.

use std::collections::VecDeque;

use hongbao_protocol::body::{ClaimEntry, EnvelopeKind, EnvelopeState};

/// An envelope as its owning shard holds it.
#[derive(Debug)]
pub struct Envelope {
    /// Wire id (shard and sequence).
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
    /// front. Entries of users who opened since are skipped when popped.
    pub holds: VecDeque<(u64, u64)>,
}

impl Envelope {
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

    /// Panics if the envelope's numbers disagree. Called after every change.
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
}
